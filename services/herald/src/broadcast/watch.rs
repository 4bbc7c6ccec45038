//! Watching a broadcast: its progress per channel, a bar of confirmations,
//! one row per recipient on request, redrawn until it ends, or as JSON.

use super::*;

pub(super) fn is_over(s: &BroadcastStatus) -> bool {
    matches!(
        BroadcastState::try_from(s.state).unwrap_or_default(),
        BroadcastState::Finished | BroadcastState::Cancelled
    )
}

/// Shows the status until the broadcast ends or Ctrl-C. On a terminal the
/// block is redrawn in place; otherwise it is printed whenever it changes.
pub(super) async fn follow(cfg: &Config, id: &str, credential: &str) -> Result<(), Failure> {
    let tty = std::io::stdout().is_terminal();
    let mut shown_lines = 0usize;
    let mut last = String::new();
    let mut missing_since: Option<tokio::time::Instant> = None;
    loop {
        let status = match fetch(cfg, id, credential, false).await {
            Ok(s) => Some(s),
            // Just accepted: the broadcast service may not have read it yet.
            Err(f) if f.code == 3 && f.message.contains("not_found") => {
                let since = *missing_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() > Duration::from_secs(30) {
                    return Err(f);
                }
                None
            }
            Err(f) => return Err(f),
        };
        if let Some(s) = &status {
            let block = render(s, std::time::SystemTime::now());
            if tty {
                if shown_lines > 0 {
                    print!("\x1b[{shown_lines}F\x1b[J");
                }
                print!("{block}");
                shown_lines = block.lines().count();
            } else if strip_clock(&block) != strip_clock(&last) {
                println!("{block}");
            }
            std::io::stdout().flush()?;
            last = block;
            if is_over(s) {
                return Ok(());
            }
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                println!("\nstopped watching; the broadcast goes on (herald broadcast status {id})");
                return Ok(());
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// The block without its first line (which holds the running clock).
fn strip_clock(block: &str) -> String {
    block.lines().skip(1).collect::<Vec<_>>().join("\n")
}

fn bar(done: u32, total: u32, width: usize) -> String {
    let filled = if total == 0 {
        0
    } else {
        ((done as usize * width) / total as usize).min(width)
    };
    format!("[{}{}]", "█".repeat(filled), "░".repeat(width - filled))
}

/// The status block: a headline, the confirmation bar, one row per
/// channel, and the outcome once it is over.
pub fn render(s: &BroadcastStatus, now: std::time::SystemTime) -> String {
    let started = herald_proto::system_time(s.started_at.as_ref());
    let ends = herald_proto::system_time(s.ends_at.as_ref());
    let elapsed = now.duration_since(started).unwrap_or_default().as_secs();
    let total = ends.duration_since(started).unwrap_or_default().as_secs();
    let mmss = |t: u64| format!("{:02}:{:02}", t / 60, t % 60);
    let mut out = format!(
        "broadcast {} · {} · severity {} · started by {} · {} of {} · call cycle {}/{}\n",
        s.broadcast_id,
        BroadcastState::name_of(s.state),
        Severity::name_of(s.severity),
        s.started_by,
        mmss(elapsed.min(total)),
        mmss(total),
        s.cycles_done,
        s.cycles_total
    );
    let pct = (s.confirmed * 100).checked_div(s.recipients).unwrap_or(0);
    out.push_str(&format!(
        "confirmed {} {}/{} ({pct}%)\n",
        bar(s.confirmed, s.recipients, 30),
        s.confirmed,
        s.recipients
    ));
    out.push_str(&format!(
        "{:<8} {:>9} {:>7} {:>10} {:>10} {:>12} {:>11}\n",
        "channel", "targeted", "sent", "delivered", "confirmed", "unreachable", "no address"
    ));
    for c in &s.channels {
        out.push_str(&format!(
            "{:<8} {:>9} {:>7} {:>10} {:>10} {:>12} {:>11}\n",
            Channel::try_from(c.channel).unwrap_or_default().name(),
            c.targeted,
            c.sent,
            c.delivered,
            c.confirmed,
            c.unreachable,
            s.recipients.saturating_sub(c.targeted)
        ));
    }
    if s.updates > 0 {
        out.push_str(&format!("updates sent: {}\n", s.updates));
    }
    if is_over(s) {
        out.push_str(&format!(
            "outcome: {} confirmed, {} not confirmed, {} unreachable{}\n",
            s.confirmed,
            s.not_confirmed,
            s.unreachable,
            if s.cancelled.is_empty() {
                String::new()
            } else {
                format!(" ({})", s.cancelled)
            }
        ));
    }
    out
}

pub(super) fn render_rows(s: &BroadcastStatus) -> String {
    let mut out = format!(
        "\n{:<24} {:<11} {:<11} {:<11} {:>5}  {:<10} {}\n",
        "contact", "email", "voice", "sms", "calls", "confirmed", "outcome"
    );
    for r in &s.recipient_rows {
        let via = if r.confirmed {
            Channel::try_from(r.confirmed_via)
                .unwrap_or_default()
                .name()
                .to_string()
        } else {
            "-".into()
        };
        out.push_str(&format!(
            "{:<24} {:<11} {:<11} {:<11} {:>5}  {:<10} {}\n",
            r.contact_id,
            r.email,
            r.voice,
            r.sms,
            r.calls,
            via,
            if r.outcome.is_empty() {
                "pending"
            } else {
                &r.outcome
            }
        ));
    }
    out
}

pub(super) fn as_json(s: &BroadcastStatus) -> serde_json::Value {
    let ts = |t: &Option<herald_proto::Timestamp>| {
        chrono::DateTime::<chrono::Utc>::from(herald_proto::system_time(t.as_ref())).to_rfc3339()
    };
    serde_json::json!({
        "broadcast_id": s.broadcast_id,
        "state": BroadcastState::name_of(s.state),
        "severity": Severity::name_of(s.severity),
        "started_by": s.started_by,
        "started_at": ts(&s.started_at),
        "ends_at": ts(&s.ends_at),
        "recipients": s.recipients,
        "confirmed": s.confirmed,
        "not_confirmed": s.not_confirmed,
        "unreachable": s.unreachable,
        "cycles_done": s.cycles_done,
        "cycles_total": s.cycles_total,
        "updates": s.updates,
        "cancelled": s.cancelled,
        "channels": s.channels.iter().map(|c| serde_json::json!({
            "channel": Channel::try_from(c.channel).unwrap_or_default().name(),
            "targeted": c.targeted,
            "sent": c.sent,
            "delivered": c.delivered,
            "confirmed": c.confirmed,
            "unreachable": c.unreachable,
        })).collect::<Vec<_>>(),
        "recipients_detail": s.recipient_rows.iter().map(|r| serde_json::json!({
            "contact_id": r.contact_id,
            "email": r.email,
            "voice": r.voice,
            "sms": r.sms,
            "calls": r.calls,
            "confirmed": r.confirmed,
            "confirmed_via": if r.confirmed { Channel::try_from(r.confirmed_via).unwrap_or_default().name() } else { "" },
            "confirmed_at": if r.confirmed { ts(&r.confirmed_at) } else { String::new() },
            "outcome": r.outcome,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::v1::ChannelProgress;

    #[test]
    fn the_block_shows_the_bar_every_channel_and_the_outcome() {
        let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = BroadcastStatus {
            broadcast_id: "fire-b".into(),
            state: BroadcastState::Finished as i32,
            severity: Severity::Extreme as i32,
            started_by: "anna".into(),
            started_at: Some(herald_proto::timestamp(t0)),
            ends_at: Some(herald_proto::timestamp(t0 + Duration::from_secs(600))),
            recipients: 4,
            confirmed: 2,
            not_confirmed: 1,
            unreachable: 1,
            cycles_done: 3,
            cycles_total: 3,
            channels: vec![
                ChannelProgress {
                    channel: Channel::Email as i32,
                    targeted: 4,
                    sent: 4,
                    delivered: 4,
                    confirmed: 1,
                    unreachable: 0,
                },
                ChannelProgress {
                    channel: Channel::Voice as i32,
                    targeted: 3,
                    sent: 3,
                    delivered: 2,
                    confirmed: 1,
                    unreachable: 1,
                },
            ],
            ..Default::default()
        };
        let text = render(&s, t0 + Duration::from_secs(75));
        assert!(text.starts_with("broadcast fire-b · finished · severity extreme · started by anna · 01:15 of 10:00 · call cycle 3/3\n"), "{text}");
        assert!(
            text.contains("confirmed [███████████████░░░░░░░░░░░░░░░] 2/4 (50%)"),
            "{text}"
        );
        assert!(
            text.contains(
                "voice            3       3          2          1            1           1"
            ),
            "{text}"
        );
        assert!(
            text.contains("outcome: 2 confirmed, 1 not confirmed, 1 unreachable"),
            "{text}"
        );
    }
}
