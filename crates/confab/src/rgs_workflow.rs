//! `confab rgs workflow add|set`: the flags of a workflow (address, number, queue or IVR,
//! prompts, hours, holidays, anonymity) applied to the document.

use clap::Args;
use confab_rgs::{Closed, Hours, Ivr, IvrOption, Prompt, RgsConfig, Then, Workflow};

use crate::cli::UsageError;
use crate::rgs_objects::{list_arg, need, then, ObjectArgs};

#[derive(Debug, Args)]
pub(crate) struct WorkflowArgs {
    /// The owner pool (FQDN); required for a new workflow.
    #[arg(long)]
    pool: Option<String>,
    /// Its SIP address (sip:helpdesk@example.com); required for a new workflow.
    #[arg(long)]
    address: Option<String>,
    /// Its phone number (tel:+14255550100); `none` removes it.
    #[arg(long, value_name = "tel:+NUMBER|none")]
    number: Option<String>,
    #[arg(long)]
    display_name: Option<String>,
    /// A hunt group: callers go straight to this queue.
    #[arg(long)]
    queue: Option<String>,
    /// An interactive workflow: the question its IVR asks (spoken by espeak-ng)...
    #[arg(long, value_name = "TEXT")]
    ivr_question: Option<String>,
    /// ...and its options, DIGIT=QUEUE, one flag each (a second level: `confab rgs import`).
    #[arg(long, value_name = "DIGIT=QUEUE")]
    ivr_option: Vec<String>,
    /// The welcome message, as text (spoken by espeak-ng) ...
    #[arg(long, value_name = "TEXT")]
    welcome_text: Option<String>,
    /// ... or a WAV file.
    #[arg(long, value_name = "FILE")]
    welcome_file: Option<String>,
    /// Music on hold, a WAV file (default: a tune made by Confab).
    #[arg(long, value_name = "FILE")]
    music_file: Option<String>,
    /// Business hours: ZONE;DAYS=HH:MM-HH:MM[,...];... as
    /// "Europe/Paris;mon-fri=08:00-12:00,13:00-17:00;sat=09:00-12:00"; `none`: always open.
    #[arg(long, value_name = "SCHEDULE|none")]
    hours: Option<String>,
    /// What callers outside business hours hear...
    #[arg(long, value_name = "TEXT")]
    after_hours_text: Option<String>,
    /// ...and the action then (default disconnect).
    #[arg(long, value_name = "ACTION")]
    after_hours_then: Option<String>,
    /// Holiday sets (comma-separated names; define them with `confab rgs import`).
    #[arg(long, value_name = "SET,...")]
    holidays: Option<String>,
    #[arg(long, value_name = "TEXT")]
    holiday_text: Option<String>,
    #[arg(long, value_name = "ACTION")]
    holiday_then: Option<String>,
    /// Agent anonymity: callers are not told which agent answered.
    #[arg(long, value_enum)]
    anonymous: Option<crate::voice::OnOff>,
}

impl ObjectArgs for WorkflowArgs {
    fn apply(&self, cfg: &mut RgsConfig, name: &str, new: bool) -> Result<(), UsageError> {
        if new {
            cfg.workflows.push(Workflow {
                name: name.to_owned(),
                pool: need(&self.pool, "--pool", "workflow")?,
                address: need(&self.address, "--address sip:NAME@DOMAIN", "workflow")?,
                number: None,
                display_name: None,
                queue: None,
                ivr: None,
                welcome: None,
                music: None,
                hours: None,
                after_hours: None,
                holidays: Vec::new(),
                holiday: None,
                anonymous: false,
            });
        }
        let w = cfg
            .workflows
            .iter_mut()
            .find(|w| w.name == name)
            .ok_or_else(|| UsageError(format!("there is no {name:?} to change")))?;
        if let Some(p) = &self.pool {
            w.pool.clone_from(p);
        }
        if let Some(a) = &self.address {
            w.address.clone_from(a);
        }
        if let Some(n) = &self.number {
            w.number = (n != "none").then(|| n.clone());
        }
        if let Some(d) = &self.display_name {
            w.display_name = Some(d.clone());
        }
        if let Some(q) = &self.queue {
            w.queue = Some(q.clone());
            w.ivr = None;
        }
        if self.ivr_question.is_some() || !self.ivr_option.is_empty() {
            let question = match (&self.ivr_question, &w.ivr) {
                (Some(t), _) => text_prompt(t),
                (None, Some(ivr)) => ivr.question.clone(),
                (None, None) => {
                    return Err(UsageError("--ivr-option needs --ivr-question TEXT".into()))
                }
            };
            let mut options = w
                .ivr
                .as_ref()
                .map(|i| i.options.clone())
                .unwrap_or_default();
            for o in &self.ivr_option {
                let (digit, queue) = o.split_once('=').ok_or_else(|| {
                    UsageError(format!(
                        "--ivr-option {o:?}: write DIGIT=QUEUE, as 1=Hardware"
                    ))
                })?;
                options.retain(|x| x.digit != digit);
                options.push(IvrOption {
                    digit: digit.to_owned(),
                    queue: Some(queue.to_owned()),
                    ivr: None,
                });
            }
            let wait = w.ivr.as_ref().map_or(10, |i| i.wait);
            w.ivr = Some(Ivr {
                question,
                options,
                wait,
            });
            w.queue = None;
        }
        if let Some(t) = &self.welcome_text {
            w.welcome = Some(text_prompt(t));
        }
        if let Some(f) = &self.welcome_file {
            w.welcome = Some(file_prompt(f));
        }
        if let Some(f) = &self.music_file {
            w.music = Some(file_prompt(f));
        }
        if let Some(h) = &self.hours {
            w.hours = if h == "none" { None } else { Some(hours(h)?) };
        }
        closed(
            &mut w.after_hours,
            &self.after_hours_text,
            &self.after_hours_then,
        )?;
        if let Some(h) = &self.holidays {
            w.holidays = list_arg(h);
        }
        closed(&mut w.holiday, &self.holiday_text, &self.holiday_then)?;
        if let Some(a) = self.anonymous {
            w.anonymous = a == crate::voice::OnOff::On;
        }
        Ok(())
    }
}

fn text_prompt(t: &str) -> Prompt {
    Prompt {
        text: Some(t.to_owned()),
        ..Prompt::default()
    }
}

fn file_prompt(f: &str) -> Prompt {
    let path = std::fs::canonicalize(f).map_or_else(|_| f.to_owned(), |p| p.display().to_string());
    Prompt {
        file: Some(path),
        ..Prompt::default()
    }
}

fn closed(
    c: &mut Option<Closed>,
    text: &Option<String>,
    action: &Option<String>,
) -> Result<(), UsageError> {
    if text.is_none() && action.is_none() {
        return Ok(());
    }
    let c = c.get_or_insert(Closed {
        message: None,
        then: Then::Disconnect,
    });
    if let Some(t) = text {
        c.message = Some(text_prompt(t));
    }
    if let Some(a) = action {
        c.then = then(a)?;
    }
    Ok(())
}

/// `Europe/Paris;mon-fri=08:00-17:00;sat=09:00-12:00`.
fn hours(spec: &str) -> Result<Hours, UsageError> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let mut parts = spec.split(';');
    let zone = parts.next().unwrap_or_default().trim().to_owned();
    let mut h = Hours {
        zone,
        mon: vec![],
        tue: vec![],
        wed: vec![],
        thu: vec![],
        fri: vec![],
        sat: vec![],
        sun: vec![],
    };
    let bad = |p: &str| {
        UsageError(format!(
            "--hours: {p:?} is not DAYS=HH:MM-HH:MM[,...] (days mon..sun, or a span as mon-fri)"
        ))
    };
    for p in parts.filter(|p| !p.trim().is_empty()) {
        let (days, ranges) = p.split_once('=').ok_or_else(|| bad(p))?;
        let (a, b) = days
            .trim()
            .split_once('-')
            .unwrap_or((days.trim(), days.trim()));
        let ia = DAYS.iter().position(|d| *d == a).ok_or_else(|| bad(p))?;
        let ib = DAYS.iter().position(|d| *d == b).ok_or_else(|| bad(p))?;
        if ib < ia {
            return Err(bad(p));
        }
        for day in &DAYS[ia..=ib] {
            let slot = match *day {
                "mon" => &mut h.mon,
                "tue" => &mut h.tue,
                "wed" => &mut h.wed,
                "thu" => &mut h.thu,
                "fri" => &mut h.fri,
                "sat" => &mut h.sat,
                _ => &mut h.sun,
            };
            slot.extend(list_arg(ranges));
        }
    }
    Ok(h)
}
