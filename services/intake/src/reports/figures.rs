//! A client's figures for a period, read from their cases' trails (SOP 002
//! §5: the status update and the progress report): which cases were open
//! in it, which opened and which closed, the response-time clocks met and
//! missed, and the next steps (the action items still open at its end).
//! Pure, so every count is tested here on hand-made records.

use std::collections::{BTreeMap, BTreeSet};

use herald_proto::v1::{AuditRecord, AuditStep};

use super::at_ms;

/// Where a case stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Open,
    Resolved,
}

/// One case's line in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseLine {
    pub case_id: String,
    /// What the client knows it by (the case id when it has no reference).
    pub reference: String,
    pub opened_ms: i64,
    /// Where it stood at the period's end.
    pub standing: Standing,
    /// Resolved within the period.
    pub closed_in_period: bool,
    pub opened_in_period: bool,
    /// Clocks answered in time in the period, and clocks that ran out.
    pub met: u32,
    pub missed: u32,
    /// Action items still open at the period's end ("what, owner, due").
    pub open_actions: Vec<String>,
}

/// What a report says, for one client and one period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    pub from_ms: i64,
    pub until_ms: i64,
    /// Oldest first.
    pub cases: Vec<CaseLine>,
}

impl Figures {
    pub fn opened(&self) -> usize {
        self.cases.iter().filter(|c| c.opened_in_period).count()
    }

    pub fn closed(&self) -> usize {
        self.cases.iter().filter(|c| c.closed_in_period).count()
    }

    pub fn still_open(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| c.standing == Standing::Open)
            .count()
    }

    pub fn met(&self) -> u32 {
        self.cases.iter().map(|c| c.met).sum()
    }

    pub fn missed(&self) -> u32 {
        self.cases.iter().map(|c| c.missed).sum()
    }

    /// Every open action item, with the case it belongs to.
    pub fn next_steps(&self) -> Vec<(String, String)> {
        self.cases
            .iter()
            .flat_map(|c| {
                c.open_actions
                    .iter()
                    .map(move |a| (c.reference.clone(), a.clone()))
            })
            .collect()
    }
}

fn kind(r: &AuditRecord) -> &str {
    if r.step == AuditStep::CaseEvent as i32 {
        r.attributes.get("kind").map(String::as_str).unwrap_or("")
    } else {
        ""
    }
}

/// One case's line, or None when it was not open at any moment of
/// `[from, until)` (or had not opened by its end).
pub fn case_line(case_id: &str, trail: &[AuditRecord], from: i64, until: i64) -> Option<CaseLine> {
    let mut records: Vec<&AuditRecord> = trail.iter().filter(|r| at_ms(r) < until).collect();
    records.sort_by_key(|r| at_ms(r));
    let opened = records.iter().find(|r| kind(r) == "opened")?;
    let reference = opened
        .attributes
        .get("reference")
        .filter(|r| !r.is_empty())
        .cloned()
        .unwrap_or_else(|| case_id.to_string());
    // Where it stood when the period began, what happened in it, and
    // where it stood at its end.
    let (mut at_start, mut standing) = (None, None);
    let (mut opened_in_period, mut reopened, mut resolved) = (false, false, false);
    for r in &records {
        let next = match kind(r) {
            "opened" | "reopened" => Standing::Open,
            "resolved" => Standing::Resolved,
            _ => continue,
        };
        if at_ms(r) < from {
            at_start = Some(next);
        } else {
            opened_in_period |= kind(r) == "opened";
            reopened |= kind(r) == "reopened";
            resolved |= next == Standing::Resolved;
        }
        standing = Some(next);
    }
    let standing = standing?;
    let closed_in_period = resolved && standing == Standing::Resolved;
    if at_start != Some(Standing::Open) && !opened_in_period && !reopened {
        return None;
    }
    // Clocks: a clock (kind and generation) that ran out in the period is
    // missed; one stopped in the period that never ran out is met.
    let clock = |r: &AuditRecord| {
        (
            r.attributes.get("clock").cloned().unwrap_or_default(),
            r.attributes.get("generation").cloned().unwrap_or_default(),
        )
    };
    let breached: BTreeSet<(String, String)> = records
        .iter()
        .filter(|r| r.step == AuditStep::SlaBreach as i32)
        .map(|r| clock(r))
        .collect();
    let in_period = |r: &&&AuditRecord| at_ms(r) >= from;
    let missed = records
        .iter()
        .filter(in_period)
        .filter(|r| r.step == AuditStep::SlaBreach as i32)
        .map(|r| clock(r))
        .collect::<BTreeSet<_>>()
        .len() as u32;
    let met = records
        .iter()
        .filter(in_period)
        .filter(|r| r.step == AuditStep::ClockStopped as i32)
        .map(|r| clock(r))
        .filter(|c| !breached.contains(c))
        .collect::<BTreeSet<_>>()
        .len() as u32;
    // Action items: those logged, less those done, by the period's end.
    let mut actions: BTreeMap<String, String> = BTreeMap::new();
    let mut done = BTreeSet::new();
    for r in &records {
        if let Some(id) = r.attributes.get("action_id") {
            done.insert(id.clone());
        }
        let Some(event) = r.attributes.get("event_id") else {
            continue;
        };
        for (k, v) in &r.attributes {
            if let Some(n) = k.strip_prefix("action_")
                && n.parse::<u32>().is_ok()
            {
                actions.insert(format!("{event}/{n}"), v.clone());
            }
        }
    }
    let open_actions = actions
        .into_iter()
        .filter(|(id, _)| !done.contains(id))
        .map(|(_, what)| what)
        .collect();
    Some(CaseLine {
        case_id: case_id.to_string(),
        reference,
        opened_ms: at_ms(opened),
        standing,
        closed_in_period,
        opened_in_period,
        met,
        missed,
        open_actions,
    })
}

/// The figures of `[from, until)` from each case's whole trail.
pub fn figures(trails: &[(String, Vec<AuditRecord>)], from: i64, until: i64) -> Figures {
    let mut cases: Vec<CaseLine> = trails
        .iter()
        .filter_map(|(id, t)| case_line(id, t, from, until))
        .collect();
    cases.sort_by(|a, b| (a.opened_ms, &a.case_id).cmp(&(b.opened_ms, &b.case_id)));
    Figures {
        from_ms: from,
        until_ms: until,
        cases,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn rec(step: AuditStep, at: i64, attrs: &[(&str, &str)]) -> AuditRecord {
        AuditRecord {
            step: step as i32,
            at: Some(herald_proto::Timestamp {
                seconds: at / 1000,
                nanos: 0,
            }),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn event(kind: &str, at: i64) -> AuditRecord {
        rec(
            AuditStep::CaseEvent,
            at,
            &[("kind", kind), ("event_id", kind)],
        )
    }

    #[test]
    fn a_period_counts_what_opened_closed_and_stays_open() {
        let (from, until) = (100 * H, 200 * H);
        let trails = vec![
            // Opened before, resolved in the period: closed.
            (
                "A".to_string(),
                vec![event("opened", 10 * H), event("resolved", 150 * H)],
            ),
            // Opened in the period and still open.
            ("B".to_string(), vec![event("opened", 120 * H)]),
            // Resolved before the period: not in it.
            (
                "C".to_string(),
                vec![event("opened", 10 * H), event("resolved", 50 * H)],
            ),
            // Opened after the period: not in it.
            ("D".to_string(), vec![event("opened", 250 * H)]),
            // Resolved before, reopened in the period.
            (
                "E".to_string(),
                vec![
                    event("opened", 10 * H),
                    event("resolved", 50 * H),
                    event("reopened", 160 * H),
                ],
            ),
        ];
        let f = figures(&trails, from, until);
        let ids: Vec<&str> = f.cases.iter().map(|c| c.case_id.as_str()).collect();
        assert_eq!(ids, ["A", "E", "B"]);
        assert_eq!((f.opened(), f.closed(), f.still_open()), (1, 1, 2));
    }

    #[test]
    fn clocks_met_and_missed_and_the_open_actions() {
        let clock = |step, at, kind: &str, generation: &str| {
            rec(step, at, &[("clock", kind), ("generation", generation)])
        };
        let mut call = rec(
            AuditStep::CaseEvent,
            130 * H,
            &[
                ("kind", "interaction_logged"),
                ("event_id", "call-1"),
                (
                    "action_1",
                    "Send the schedule (owner fl-sam, due 2026-12-10)",
                ),
                ("action_2", "Call back (owner fl-sam, due 2026-12-11)"),
            ],
        );
        call.attributes.insert("reference".into(), String::new());
        let trail = vec![
            event("opened", 110 * H),
            clock(AuditStep::ClockStopped, 111 * H, "acknowledgement", "1"),
            clock(AuditStep::SlaBreach, 140 * H, "response", "1"),
            clock(AuditStep::ClockStopped, 141 * H, "response", "1"),
            // Before the period: not counted.
            clock(AuditStep::ClockStopped, 90 * H, "resolution", "0"),
            call,
            rec(
                AuditStep::CaseEvent,
                150 * H,
                &[("kind", "action_done"), ("action_id", "call-1/1")],
            ),
        ];
        let line = case_line("CASE-1", &trail, 100 * H, 200 * H).unwrap();
        assert_eq!(
            (line.met, line.missed),
            (1, 1),
            "the breached clock is missed only"
        );
        assert_eq!(
            line.open_actions,
            ["Call back (owner fl-sam, due 2026-12-11)"]
        );
        assert_eq!(line.reference, "CASE-1");
        // The action done after the period's end is still open at its end.
        let line = case_line("CASE-1", &trail, 100 * H, 145 * H).unwrap();
        assert_eq!(line.open_actions.len(), 2);
    }
}
