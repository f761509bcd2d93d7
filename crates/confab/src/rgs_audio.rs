//! Prompts and music for `confab rgs`: text spoken by espeak-ng, or a WAV file, read into a
//! clip (8 kHz G.711: `confab_media::Clip`) and stored in the deployment's database under a
//! name made of its content, so that every server of the pool plays the same sound and a
//! deployment needs no recorded file to start.

use std::path::Path;
use std::process::Command;

use anyhow::Context;
use base64::Engine as _;
use confab_media::Clip;
use confab_rgs::{Prompt, RgsConfig, AUDIO_PREFIX};
use sha2::{Digest, Sha256};

use crate::cli::UsageError;

/// Makes every prompt of `config` that has text or a file but no stored sound playable:
/// rendered or read, stored. `base` is where relative file names start; `what` names the
/// object for errors.
pub(crate) fn store_prompts(
    store: &dyn confab_store::Store,
    config: &mut RgsConfig,
    base: &Path,
) -> anyhow::Result<usize> {
    let mut stored = 0;
    for w in &mut config.workflows {
        let object = format!("workflow \"{}\"", w.name);
        let mut prompts: Vec<&mut Prompt> = [&mut w.welcome, &mut w.music]
            .into_iter()
            .flatten()
            .collect();
        for closed in [&mut w.after_hours, &mut w.holiday].into_iter().flatten() {
            prompts.extend(closed.message.as_mut());
        }
        let mut levels: Vec<&mut confab_rgs::Ivr> = w.ivr.iter_mut().collect();
        while let Some(l) = levels.pop() {
            prompts.push(&mut l.question);
            levels.extend(l.options.iter_mut().filter_map(|o| o.ivr.as_deref_mut()));
        }
        for p in prompts {
            if p.audio.is_some() {
                continue;
            }
            let clip = make_clip(p, base).map_err(|e| UsageError(format!("{object}: {e}")))?;
            p.audio = Some(save(store, &clip)?);
            stored += 1;
        }
    }
    Ok(stored)
}

/// The clip of a prompt: its file if it has one, else its text spoken.
fn make_clip(p: &Prompt, base: &Path) -> Result<Clip, String> {
    if let Some(file) = &p.file {
        let path = base.join(file);
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        return Clip::from_wav(&bytes).map_err(|e| format!("{}: {e}", path.display()));
    }
    let text = p.text.as_deref().unwrap_or_default();
    if text.trim().is_empty() {
        return Err("a prompt needs text or a WAV file".into());
    }
    let wav = speak(text).map_err(|e| format!("{e}, or give a WAV file"))?;
    Clip::from_wav(&wav).map_err(|e| format!("espeak-ng's output: {e}"))
}

/// `text` spoken by espeak-ng, as a WAV file's bytes (written to a file: on standard output
/// its header cannot say how long it is).
pub(crate) fn speak(text: &str) -> Result<Vec<u8>, String> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = std::env::temp_dir().join(format!("confab-prompt-{}-{n}.wav", std::process::id()));
    let out = Command::new("espeak-ng")
        .args(["-v", "en", "-s", "150", "-w"])
        .arg(&file)
        .args(["--", text])
        .output()
        .map_err(|e| {
            format!("cannot run espeak-ng to speak the prompt ({e}): install it (apt-get install espeak-ng)")
        })?;
    let wav = std::fs::read(&file);
    let _ = std::fs::remove_file(&file);
    match wav {
        Ok(bytes) if out.status.success() && !bytes.is_empty() => Ok(bytes),
        _ => Err(format!(
            "espeak-ng failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Stores a clip; its name (the sha-256 of its µ-law bytes, shortened).
fn save(store: &dyn confab_store::Store, clip: &Clip) -> anyhow::Result<String> {
    let digest = Sha256::digest(clip.ulaw());
    let name: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(clip.ulaw());
    store
        .set_setting(&format!("{AUDIO_PREFIX}{name}"), Some(&b64))
        .context("cannot store a prompt")?;
    Ok(name)
}
