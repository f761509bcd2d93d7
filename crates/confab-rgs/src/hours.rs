//! Whether a workflow is open: its weekly business hours and its holiday sets, read in its
//! time zone (daylight saving included: the zone's rules come from the time-zone database
//! built into `jiff`).

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::model::{HolidaySet, Workflow};

/// A workflow's state at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    Open,
    AfterHours,
    Holiday,
}

/// A workflow's hours and holidays, read and checked.
#[derive(Debug, Clone)]
pub struct Calendar {
    zone: TimeZone,
    /// Open ranges per weekday (Monday first), in minutes of the day; `None`: always open.
    week: Option<[Vec<(u32, u32)>; 7]>,
    holidays: Vec<(DateTime, DateTime)>,
}

impl Calendar {
    /// The calendar of `w`, with the holiday sets it names taken from `sets`. The error says
    /// what is wrong (the caller names the workflow).
    pub fn of(w: &Workflow, sets: &[HolidaySet]) -> Result<Self, String> {
        let zone_name = w.hours.as_ref().map_or("UTC", |h| h.zone.as_str());
        let zone = TimeZone::get(zone_name).map_err(|_| {
            format!("unknown time zone `{zone_name}`: use an IANA name such as Europe/Paris or America/New_York")
        })?;
        let week = match &w.hours {
            None => None,
            Some(h) => {
                let mut week: [Vec<(u32, u32)>; 7] = Default::default();
                for (i, (day, ranges)) in h.days().into_iter().enumerate() {
                    for r in ranges {
                        week[i].push(range(r).map_err(|e| format!("hours {day}: {e}"))?);
                    }
                    week[i].sort_unstable();
                    for pair in week[i].windows(2) {
                        if pair[1].0 < pair[0].1 {
                            return Err(format!(
                                "hours {day}: ranges {} and {} overlap; merge them into one",
                                show(pair[0]),
                                show(pair[1])
                            ));
                        }
                    }
                }
                Some(week)
            }
        };
        let mut holidays = Vec::new();
        for name in &w.holidays {
            let set = sets.iter().find(|s| &s.name == name).ok_or_else(|| {
                format!("no holiday set `{name}`: create it first or remove it from the workflow")
            })?;
            for d in &set.days {
                let start: DateTime = d.start.parse().map_err(|_| {
                    format!(
                        "holiday `{}` start `{}` is not a date and time like 2026-12-24T00:00",
                        d.name, d.start
                    )
                })?;
                let end: DateTime = d.end.parse().map_err(|_| {
                    format!(
                        "holiday `{}` end `{}` is not a date and time like 2026-12-27T00:00",
                        d.name, d.end
                    )
                })?;
                if end <= start {
                    return Err(format!(
                        "holiday `{}` ends before it starts ({} to {}): swap them",
                        d.name, d.start, d.end
                    ));
                }
                holidays.push((start, end));
            }
        }
        Ok(Self {
            zone,
            week,
            holidays,
        })
    }

    /// Open, after hours or on holiday at `unix` seconds. Holidays win over hours.
    pub fn state(&self, unix: i64) -> Open {
        let Ok(ts) = Timestamp::from_second(unix) else {
            return Open::Open;
        };
        let local = ts.to_zoned(self.zone.clone());
        let dt = local.datetime();
        if self.holidays.iter().any(|(s, e)| *s <= dt && dt < *e) {
            return Open::Holiday;
        }
        let Some(week) = &self.week else {
            return Open::Open;
        };
        let day = usize::from(local.weekday().to_monday_zero_offset() as u8);
        let minute = u32::from(dt.hour() as u8) * 60 + u32::from(dt.minute() as u8);
        if week[day].iter().any(|&(s, e)| s <= minute && minute < e) {
            Open::Open
        } else {
            Open::AfterHours
        }
    }
}

/// `08:00-17:30` in minutes of the day; `24:00` ends a day.
fn range(r: &str) -> Result<(u32, u32), String> {
    let (a, b) = r
        .split_once('-')
        .ok_or_else(|| format!("`{r}` is not a range like 08:00-17:00"))?;
    let (a, b) = (minutes(a.trim(), r)?, minutes(b.trim(), r)?);
    if b <= a {
        return Err(format!(
            "`{r}` ends before it starts; a range runs within one day (split a night shift at 24:00)"
        ));
    }
    Ok((a, b))
}

fn minutes(t: &str, r: &str) -> Result<u32, String> {
    let bad = || format!("`{r}`: `{t}` is not a time like 08:00");
    let (h, m) = t.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 || h > 24 || (h == 24 && m > 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn show((a, b): (u32, u32)) -> String {
    format!("{:02}:{:02}-{:02}:{:02}", a / 60, a % 60, b / 60, b % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Holiday, Hours};

    fn workflow(hours: Option<Hours>, holidays: Vec<String>) -> Workflow {
        Workflow {
            name: "Help Desk".into(),
            pool: "pool1.example.com".into(),
            address: "sip:helpdesk@example.com".into(),
            number: None,
            display_name: None,
            queue: Some("q".into()),
            ivr: None,
            welcome: None,
            music: None,
            hours,
            after_hours: None,
            holidays,
            holiday: None,
            anonymous: false,
        }
    }

    fn paris_weekdays() -> Hours {
        let day = vec!["08:00-12:00".to_owned(), "13:00-17:30".to_owned()];
        Hours {
            zone: "Europe/Paris".into(),
            mon: day.clone(),
            tue: day.clone(),
            wed: day.clone(),
            thu: day.clone(),
            fri: day,
            sat: vec![],
            sun: vec![],
        }
    }

    fn at(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_second()
    }

    #[test]
    fn hours_are_read_in_the_workflows_zone_across_daylight_saving() {
        let c = Calendar::of(&workflow(Some(paris_weekdays()), vec![]), &[]).unwrap();
        // Tuesday 1 December 2026: Paris is UTC+1
        assert_eq!(
            c.state(at("2026-12-01T07:30:00Z")),
            Open::Open,
            "08:30 in Paris"
        );
        assert_eq!(
            c.state(at("2026-12-01T06:59:00Z")),
            Open::AfterHours,
            "07:59"
        );
        assert_eq!(
            c.state(at("2026-12-01T11:30:00Z")),
            Open::AfterHours,
            "lunch"
        );
        assert_eq!(c.state(at("2026-12-01T16:29:00Z")), Open::Open, "17:29");
        assert_eq!(
            c.state(at("2026-12-01T16:30:00Z")),
            Open::AfterHours,
            "17:30"
        );
        // Wednesday 1 July 2026: UTC+2, so 06:30Z is 08:30 there
        assert_eq!(c.state(at("2026-07-01T06:30:00Z")), Open::Open);
        assert_eq!(
            c.state(at("2026-12-05T10:00:00Z")),
            Open::AfterHours,
            "Saturday"
        );
        let always = Calendar::of(&workflow(None, vec![]), &[]).unwrap();
        assert_eq!(always.state(at("2026-12-05T03:00:00Z")), Open::Open);
    }

    #[test]
    fn holidays_close_a_workflow_even_in_its_hours() {
        let set = HolidaySet {
            name: "Christmas".into(),
            pool: "pool1.example.com".into(),
            days: vec![Holiday {
                name: "Christmas Eve".into(),
                start: "2026-12-24T12:00".into(),
                end: "2026-12-26T00:00".into(),
            }],
        };
        let w = workflow(Some(paris_weekdays()), vec!["Christmas".into()]);
        let c = Calendar::of(&w, &[set]).unwrap();
        assert_eq!(
            c.state(at("2026-12-24T10:00:00Z")),
            Open::Open,
            "11:00 Thursday"
        );
        assert_eq!(c.state(at("2026-12-24T13:00:00Z")), Open::Holiday);
        assert_eq!(c.state(at("2026-12-25T09:00:00Z")), Open::Holiday);
    }

    #[test]
    fn inverted_overlapping_and_malformed_hours_are_refused_with_the_fix() {
        let mut h = paris_weekdays();
        h.wed = vec!["17:00-08:00".into()];
        let e = Calendar::of(&workflow(Some(h), vec![]), &[]).unwrap_err();
        assert!(
            e.contains("hours wed") && e.contains("ends before it starts"),
            "{e}"
        );
        let mut h = paris_weekdays();
        h.thu = vec!["08:00-12:00".into(), "11:00-14:00".into()];
        let e = Calendar::of(&workflow(Some(h), vec![]), &[]).unwrap_err();
        assert!(e.contains("08:00-12:00 and 11:00-14:00 overlap"), "{e}");
        let mut h = paris_weekdays();
        h.fri = vec!["8h-17h".into()];
        assert!(Calendar::of(&workflow(Some(h), vec![]), &[]).is_err());
        let mut h = paris_weekdays();
        h.zone = "Mars/Olympus".into();
        let e = Calendar::of(&workflow(Some(h), vec![]), &[]).unwrap_err();
        assert!(e.contains("unknown time zone"), "{e}");
        let e = Calendar::of(&workflow(None, vec!["Nope".into()]), &[]).unwrap_err();
        assert!(e.contains("no holiday set `Nope`"), "{e}");
        assert_eq!(range("00:00-24:00"), Ok((0, 1440)));
    }
}
