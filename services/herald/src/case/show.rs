//! `herald case show`: a case's clocks and escalation as the sla and
//! escalation services report them, deadlines in the team's local time.

use super::*;

/// Asks one service about the case. Outer error: not answering.
pub(super) async fn query<R: Message + Default>(
    bus: &herald_runtime::bus::Bus,
    subject: &str,
    case_id: &str,
) -> Result<R, String> {
    let q = CaseQuery {
        case_id: case_id.to_string(),
    };
    match tokio::time::timeout(
        Duration::from_secs(5),
        bus.client
            .request(subject.to_string(), q.encode_to_vec().into()),
    )
    .await
    {
        Ok(Ok(msg)) => R::decode(msg.payload).map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5s".into()),
    }
}

pub(super) async fn show(cfg: &Config, args: ShowArgs) -> Result<(), Failure> {
    if !subjects::is_subject_token(&args.case_id) {
        return Err(usage(format!(
            "{:?} is not a case id (letters, digits, - _ : @ + =)",
            args.case_id
        )));
    }
    let bus = crate::connect_bus(cfg, herald_proto::access::Role::Operator).await?;
    let (sla, esc) = tokio::join!(
        query::<SlaQueryReply>(&bus, subjects::SLA_QUERY, &args.case_id),
        query::<EscalationQueryReply>(&bus, subjects::ESCALATION_QUERY, &args.case_id),
    );
    let not_found = |code: i32| code == ErrorCode::NotFound as i32;
    let sla: Result<Option<SlaView>, String> = match sla {
        Err(e) => Err(format!("the sla service did not answer ({e})")),
        Ok(r) => match r.result {
            Some(sla_query_reply::Result::View(v)) => Ok(Some(v)),
            Some(sla_query_reply::Result::Rejected(r)) if not_found(r.code) => Ok(None),
            Some(sla_query_reply::Result::Rejected(r)) => Err(r.message),
            None => Err("empty reply".into()),
        },
    };
    let esc: Result<Option<EscalationView>, String> = match esc {
        Err(e) => Err(format!("the escalation service did not answer ({e})")),
        Ok(r) => match r.result {
            Some(escalation_query_reply::Result::View(v)) => Ok(Some(v)),
            Some(escalation_query_reply::Result::Rejected(r)) if not_found(r.code) => Ok(None),
            Some(escalation_query_reply::Result::Rejected(r)) => Err(r.message),
            None => Err("empty reply".into()),
        },
    };
    match (&sla, &esc) {
        (Ok(None), Ok(None)) => {
            return Err(crate::refused(format!(
                "no case {} (neither the sla nor the escalation service knows it)",
                args.case_id
            )));
        }
        (Err(a), Err(b)) => {
            return Err(Failure {
                code: 1,
                message: format!("{a}; {b} (is Herald running? see `make run`)"),
            });
        }
        _ => {}
    }
    let now = Utc::now();
    if args.json {
        let v = serde_json::json!({
            "case_id": args.case_id,
            "clocks": match &sla { Ok(Some(v)) => clocks_json(v), _ => serde_json::Value::Null },
            "escalation": match &esc { Ok(Some(v)) => escalation_json(v), _ => serde_json::Value::Null },
        });
        println!("{v}");
        return Ok(());
    }
    let tz: chrono_tz::Tz = match &sla {
        Ok(Some(v)) => v.time_zone.parse().unwrap_or(chrono_tz::UTC),
        _ => chrono_tz::UTC,
    };
    let local = |t: Option<&herald_proto::Timestamp>| -> String {
        match t {
            None => "-".into(),
            Some(t) => DateTime::<Utc>::from(herald_proto::system_time(Some(t)))
                .with_timezone(&tz)
                .format("%a %d %b %Y %H:%M %Z")
                .to_string(),
        }
    };
    println!("case {}", args.case_id);
    match &sla {
        Ok(Some(v)) => {
            println!(
                "  team {} (calendar {}, {}), channel {}, priority {}",
                if v.team.is_empty() { "-" } else { &v.team },
                v.calendar,
                v.time_zone,
                CaseChannel::try_from(v.channel).unwrap_or_default().name(),
                Priority::try_from(v.priority).unwrap_or_default().name()
            );
            println!("clocks");
            if v.clocks.is_empty() {
                println!("  none (no SLA policy sets a clock for this case)");
            }
            for c in &v.clocks {
                println!("  {}", clock_line(c, &local));
            }
        }
        Ok(None) => println!("clocks\n  none"),
        Err(e) => println!("clocks\n  unknown: {e}"),
    }
    println!("escalation");
    match &esc {
        Ok(Some(e)) => {
            for line in escalation_lines(e, &local, now) {
                println!("  {line}");
            }
        }
        Ok(None) => println!("  none"),
        Err(e) => println!("  unknown: {e}"),
    }
    if let Ok(Some(e)) = &esc
        && let Some(f) = &e.feedback
    {
        println!("feedback");
        println!(
            "  {}, rated {}/5, {} (department {}, told {}), since {}",
            if f.category.is_empty() {
                "no category"
            } else {
                &f.category
            },
            f.rating,
            FeedbackStatus::name_of(f.status).replace('_', " "),
            if f.department.is_empty() {
                "-"
            } else {
                &f.department
            },
            if f.owners.is_empty() {
                "nobody".to_string()
            } else {
                f.owners.join(", ")
            },
            local(f.updated_at.as_ref())
        );
    }
    if let Ok(Some(e)) = &esc
        && !e.actions.is_empty()
    {
        println!("action items");
        for a in &e.actions {
            println!(
                "  {:<24} {:<5} {} (owner {}, due {}{})",
                a.action_id,
                if a.done { "done" } else { "open" },
                a.description,
                a.owner,
                local(a.due.as_ref()),
                match a.reminded {
                    0 => String::new(),
                    n => format!(", reminded {n}x"),
                }
            );
        }
    }
    Ok(())
}

fn clock_line(c: &ClockView, local: &dyn Fn(Option<&herald_proto::Timestamp>) -> String) -> String {
    let kind = ClockKind::try_from(c.clock).unwrap_or_default().name();
    let state = ClockState::try_from(c.state).unwrap_or_default();
    let target = format!("{} ({})", c.target, c.policy);
    match state {
        ClockState::Stopped => format!(
            "{kind:<16} stopped  {target}; {} at {}",
            if c.breached || c.seconds_left < 0 {
                "missed its deadline, stopped"
            } else {
                "met, stopped"
            },
            local(c.stopped_at.as_ref())
        ),
        ClockState::Paused => format!(
            "{kind:<16} paused   {target}; {} left when it resumes (due {} if it resumed now)",
            herald_calendar::duration_words(c.seconds_left, c.business_hours),
            local(c.deadline.as_ref())
        ),
        _ => {
            let left = if c.seconds_left == i64::MAX {
                "no working time ahead".to_string()
            } else if c.seconds_left >= 0 {
                format!(
                    "{} left",
                    herald_calendar::duration_words(c.seconds_left, c.business_hours)
                )
            } else {
                format!(
                    "BREACHED {} ago",
                    herald_calendar::duration_words(-c.seconds_left, c.business_hours)
                )
            };
            format!(
                "{kind:<16} running  {target}; due {}, {left}{}",
                local(c.deadline.as_ref()),
                if c.warned && !c.breached {
                    " (warned)"
                } else {
                    ""
                }
            )
        }
    }
}

fn escalation_lines(
    e: &EscalationView,
    local: &dyn Fn(Option<&herald_proto::Timestamp>) -> String,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut out = Vec::new();
    match e.state.as_str() {
        "none" => out.push("none".to_string()),
        state => {
            out.push(format!(
                "{state}: level {} ({}), notice {}, started {} by {} (policy {})",
                e.level,
                e.level_name.replace('_', " "),
                e.round,
                local(e.started_at.as_ref()),
                e.trigger,
                e.policy
            ));
            if !e.notified.is_empty() {
                out.push(format!("notified: {}", e.notified.join(", ")));
            }
            if let Some(next) = &e.next_at {
                let at = DateTime::<Utc>::from(herald_proto::system_time(Some(next)));
                let secs = (at - now).num_seconds();
                out.push(format!(
                    "next level or repeat: {} (in {})",
                    local(Some(next)),
                    herald_calendar::duration_words(secs.max(0), false)
                ));
            }
            if e.stopped_at.is_some() {
                out.push(format!(
                    "stopped {}: {}",
                    local(e.stopped_at.as_ref()),
                    e.stopped_by
                ));
            }
        }
    }
    if e.escalations > 1 {
        out.push(format!(
            "escalations of this case so far: {}",
            e.escalations
        ));
    }
    let follow = match e.follow_up.as_str() {
        "none" => "none".to_string(),
        "answered" => format!("answered, rating {}/5", e.rating),
        s => match &e.follow_up_at {
            Some(t) => format!("{} (next step {})", s.replace('_', " "), local(Some(t))),
            None => s.replace('_', " "),
        },
    };
    out.push(format!("follow-up: {follow}"));
    out
}

fn ts_json(t: Option<&herald_proto::Timestamp>) -> serde_json::Value {
    match t {
        None => serde_json::Value::Null,
        Some(t) => DateTime::<Utc>::from(herald_proto::system_time(Some(t)))
            .to_rfc3339()
            .into(),
    }
}

fn clocks_json(v: &SlaView) -> serde_json::Value {
    serde_json::json!({
        "team": v.team,
        "calendar": v.calendar,
        "time_zone": v.time_zone,
        "channel": CaseChannel::try_from(v.channel).unwrap_or_default().name(),
        "priority": Priority::try_from(v.priority).unwrap_or_default().name(),
        "clocks": v.clocks.iter().map(|c| serde_json::json!({
            "clock": ClockKind::try_from(c.clock).unwrap_or_default().name(),
            "state": ClockState::name_of(c.state),
            "policy": c.policy,
            "target": c.target,
            "started_at": ts_json(c.started_at.as_ref()),
            "deadline": ts_json(c.deadline.as_ref()),
            "seconds_left": c.seconds_left,
            "business_hours": c.business_hours,
            "warned": c.warned,
            "breached": c.breached,
            "stopped_at": ts_json(c.stopped_at.as_ref()),
        })).collect::<Vec<_>>(),
    })
}

fn escalation_json(e: &EscalationView) -> serde_json::Value {
    serde_json::json!({
        "state": e.state,
        "policy": e.policy,
        "trigger": e.trigger,
        "level": e.level,
        "level_name": e.level_name,
        "round": e.round,
        "started_at": ts_json(e.started_at.as_ref()),
        "next_at": ts_json(e.next_at.as_ref()),
        "notified": e.notified,
        "stopped_at": ts_json(e.stopped_at.as_ref()),
        "stopped_by": e.stopped_by,
        "follow_up": e.follow_up,
        "follow_up_at": ts_json(e.follow_up_at.as_ref()),
        "rating": e.rating,
        "escalations": e.escalations,
        "feedback": e.feedback.as_ref().map(|f| serde_json::json!({
            "category": f.category,
            "department": f.department,
            "owners": f.owners,
            "status": FeedbackStatus::name_of(f.status),
            "rating": f.rating,
            "updated_at": ts_json(f.updated_at.as_ref()),
        })),
        "actions": e.actions.iter().map(|a| serde_json::json!({
            "action_id": a.action_id,
            "description": a.description,
            "owner": a.owner,
            "due": ts_json(a.due.as_ref()),
            "done": a.done,
            "reminded": a.reminded,
        })).collect::<Vec<_>>(),
    })
}
