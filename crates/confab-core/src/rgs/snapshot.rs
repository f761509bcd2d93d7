//! The response-group configuration as the server serves it: the stored document checked,
//! each workflow's calendar and sounds ready, who is signed in to which formal group, and how
//! a Request-URI (an address's user part, or a number) finds its workflow. One snapshot is
//! shared by every shard and replaced whole when the store changes; a caller keeps the one
//! it arrived under.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use base64::Engine as _;
use confab_media::Clip;
use confab_rgs::hours::Calendar;
use confab_rgs::{Prompt, RgsConfig, AUDIO_PREFIX};

/// A served response-group configuration.
pub(crate) struct Snapshot {
    pub(crate) config: RgsConfig,
    /// Per workflow (same indexes as the configuration's).
    pub(crate) calendars: Vec<Calendar>,
    /// Workflows by their address's user part (lower case) and by number (`+14255550100`).
    by_user: HashMap<String, usize>,
    by_number: HashMap<String, usize>,
    /// Stored sounds by name.
    clips: HashMap<String, Arc<Clip>>,
    /// `(group, user@domain)` of agents signed in to formal groups.
    signed_in: HashSet<(String, String)>,
    /// Music on hold where a workflow has none.
    pub(crate) tune: Arc<Clip>,
}

impl Snapshot {
    /// Builds the snapshot of `text` with the stored sounds `audio` (`(setting name, base64)`)
    /// and the sign-ins of `signed_in_text`; the error names every problem.
    pub(crate) fn build(
        text: &str,
        signed_in_text: &str,
        audio: &[(String, String)],
    ) -> Result<Self, String> {
        let config = RgsConfig::from_toml(text)?;
        let problems = config.check();
        if !problems.is_empty() {
            let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Err(all.join("; "));
        }
        let mut calendars = Vec::new();
        let mut by_user = HashMap::new();
        let mut by_number = HashMap::new();
        for (i, w) in config.workflows.iter().enumerate() {
            calendars.push(Calendar::of(w, &config.holiday_sets)?);
            if let Some((user, _)) = w
                .address
                .strip_prefix("sip:")
                .and_then(|a| a.split_once('@'))
            {
                by_user.insert(user.to_ascii_lowercase(), i);
            }
            if let Some(n) = &w.number {
                by_number.insert(bare_number(n).to_owned(), i);
            }
        }
        let mut clips = HashMap::new();
        for (name, b64) in audio {
            let Some(id) = name.strip_prefix(AUDIO_PREFIX) else {
                continue;
            };
            match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
                Ok(bytes) => {
                    clips.insert(id.to_owned(), Arc::new(Clip::from_ulaw(bytes)));
                }
                Err(e) => {
                    return Err(format!(
                        "stored sound {id} is damaged ({e}); configure it again"
                    ))
                }
            }
        }
        for w in &config.workflows {
            for p in prompts(w) {
                if let Some(id) = &p.audio {
                    if !clips.contains_key(id) {
                        return Err(format!(
                            "workflow \"{}\": the sound {id} is not stored; set its prompt again",
                            w.name
                        ));
                    }
                }
            }
        }
        let signed_in = signed_in_text
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(g, u)| (g.to_owned(), u.trim().to_ascii_lowercase()))
            .collect();
        Ok(Self {
            config,
            calendars,
            by_user,
            by_number,
            clips,
            signed_in,
            tune: Arc::new(Clip::tune()),
        })
    }

    /// The workflow `user` (a Request-URI's user part) reaches.
    pub(crate) fn workflow_of_user(&self, user: &str) -> Option<usize> {
        if self.by_user.is_empty() {
            return None;
        }
        self.by_user.get(&user.to_ascii_lowercase()).copied()
    }

    /// The workflow holding number `+14255550100`.
    pub(crate) fn workflow_of_number(&self, number: &str) -> Option<usize> {
        self.by_number.get(number).copied()
    }

    /// The sound of a prompt, if it has been stored.
    pub(crate) fn clip(&self, p: Option<&Prompt>) -> Option<Arc<Clip>> {
        let id = p?.audio.as_ref()?;
        self.clips.get(id).cloned()
    }

    /// Whether `agent` takes calls from group `group` (informal groups: every member).
    pub(crate) fn signed_in(&self, group: &confab_rgs::Group, agent: &str) -> bool {
        match group.participation {
            confab_rgs::Participation::Informal => true,
            confab_rgs::Participation::Formal => self
                .signed_in
                .contains(&(group.name.clone(), agent.to_ascii_lowercase())),
        }
    }

    /// How many workflows it serves.
    pub(crate) fn workflows(&self) -> usize {
        self.config.workflows.len()
    }
}

/// Every prompt of a workflow.
fn prompts(w: &confab_rgs::Workflow) -> Vec<&Prompt> {
    let mut out: Vec<&Prompt> = [&w.welcome, &w.music]
        .into_iter()
        .flatten()
        .chain(
            [&w.after_hours, &w.holiday]
                .into_iter()
                .flatten()
                .filter_map(|c| c.message.as_ref()),
        )
        .collect();
    let mut levels: Vec<&confab_rgs::Ivr> = w.ivr.iter().collect();
    while let Some(l) = levels.pop() {
        out.push(&l.question);
        levels.extend(l.options.iter().filter_map(|o| o.ivr.as_deref()));
    }
    out
}

/// `tel:+14255550100;ext=1` → `+14255550100`.
pub(crate) fn bare_number(n: &str) -> &str {
    let n = n.strip_prefix("tel:").unwrap_or(n);
    n.split(';').next().unwrap_or(n)
}
