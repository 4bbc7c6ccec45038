//! What a coordinator asks for, from flags or a file: the audience, the
//! messages in each language, the severity and the call cycles, shown back
//! in words before anything is sent.

use super::*;

/// The file form of a broadcast.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct BroadcastFile {
    severity: Option<String>,
    #[serde(default)]
    to: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    organisations: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    messages: Vec<FileMessage>,
    pub(super) default_language: Option<String>,
    #[serde(default)]
    sms: bool,
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    cycles: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    duration: Option<Duration>,
    case: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct FileMessage {
    language: String,
    subject: String,
    body: String,
    speak: String,
    sms: Option<String>,
}

pub(super) fn read_file(path: &PathBuf) -> Result<BroadcastFile, Failure> {
    let text =
        std::fs::read_to_string(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    serde_saphyr::from_str(&text).map_err(|e| usage(format!("{}: {e}", path.display())))
}

/// The messages of a file plus the one given by flags, if any.
pub(super) fn messages(
    file: &BroadcastFile,
    flags: &MessageArgs,
) -> Result<Vec<BroadcastMessage>, Failure> {
    let mut out: Vec<BroadcastMessage> = file
        .messages
        .iter()
        .map(|m| BroadcastMessage {
            language: m.language.clone(),
            subject: m.subject.clone(),
            body: m.body.clone(),
            speak: m.speak.clone(),
            sms: m.sms.clone().unwrap_or_default(),
        })
        .collect();
    let given = [&flags.subject, &flags.body, &flags.speak, &flags.sms_text];
    if given.iter().any(|g| g.is_some()) {
        let (Some(subject), Some(body)) = (&flags.subject, &flags.body) else {
            return Err(usage(
                "a message by flags needs --subject and --body (and --speak for the call)",
            ));
        };
        out.push(BroadcastMessage {
            language: flags.language.clone(),
            subject: subject.clone(),
            body: body.clone(),
            speak: flags.speak.clone().unwrap_or_else(|| body.clone()),
            sms: flags.sms_text.clone().unwrap_or_default(),
        });
    }
    if out.is_empty() {
        return Err(usage(
            "no message: give --subject, --body and --speak, or --file with messages",
        ));
    }
    Ok(out)
}

pub(super) fn build_start(args: &StartArgs) -> Result<StartBroadcast, Failure> {
    let file = match &args.file {
        Some(p) => read_file(p)?,
        None => BroadcastFile::default(),
    };
    let severity_text = args
        .severity
        .clone()
        .or(file.severity.clone())
        .ok_or_else(|| usage("--severity is required: minor, moderate, severe or extreme"))?;
    let severity = Severity::parse(&severity_text).ok_or_else(|| {
        usage(format!(
            "--severity {severity_text:?}: minor, moderate, severe or extreme"
        ))
    })?;
    let joined =
        |a: &[String], b: &[String]| -> Vec<String> { a.iter().chain(b).cloned().collect() };
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs() as u32).unwrap_or(0);
    Ok(StartBroadcast {
        broadcast_id: args.id.clone().unwrap_or_default(),
        credential: args.credential.token(),
        severity: severity as i32,
        audience: Some(Audience {
            contact_ids: joined(&file.to, &args.to),
            group_ids: joined(&file.groups, &args.groups),
            organisations: joined(&file.organisations, &args.organisations),
            roles: joined(&file.roles, &args.roles),
        }),
        messages: messages(&file, &args.message)?,
        default_language: file.default_language.clone().unwrap_or_default(),
        sms: args.sms || file.sms,
        cycles: Some(Cycles {
            interval_seconds: secs(args.interval.or(file.interval)),
            cycles: args.cycles.or(file.cycles).unwrap_or(0),
            duration_seconds: secs(args.duration.or(file.duration)),
        }),
        case_id: args.case_id.clone().or(file.case).unwrap_or_default(),
        ..Default::default()
    })
}

/// What the coordinator is asked to confirm.
pub(super) fn describe(req: &StartBroadcast) -> String {
    let a = req.audience.clone().unwrap_or_default();
    let mut who = Vec::new();
    for (label, v) in [
        ("contact", &a.contact_ids),
        ("group", &a.group_ids),
        ("organisation", &a.organisations),
        ("role", &a.roles),
    ] {
        if !v.is_empty() {
            who.push(format!(
                "{label}{} {}",
                if v.len() > 1 { "s" } else { "" },
                v.join(", ")
            ));
        }
    }
    let langs: Vec<&str> = req.messages.iter().map(|m| m.language.as_str()).collect();
    let c = req.cycles.unwrap_or_default();
    let or_default = |n: u32, unit: &str| {
        if n == 0 {
            "the configured default".to_string()
        } else {
            format!("{n}{unit}")
        }
    };
    format!(
        "Broadcast {} (severity {}) to {}\n  by email and phone{}, in {}\n  calls: {} in all, every {}, for {}\n  subject: {}",
        req.broadcast_id,
        Severity::name_of(req.severity),
        who.join("; "),
        if req.sms { " and SMS" } else { "" },
        langs.join(", "),
        or_default(c.cycles, ""),
        or_default(c.interval_seconds, "s"),
        or_default(c.duration_seconds, "s"),
        req.messages
            .first()
            .map(|m| m.subject.as_str())
            .unwrap_or("")
    )
}

/// Asks y/N on the terminal; without one, only --yes starts a broadcast.
pub(super) fn confirm_on_terminal(question: &str) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(usage(
            "not starting: confirmation is needed and there is no terminal to ask on (add --yes)",
        ));
    }
    print!("{question}\nSend it now? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broadcast_file_reads_with_human_durations() {
        let f: BroadcastFile = serde_saphyr::from_str(
            "severity: extreme\ngroups: [floor-3]\ninterval: 2m\ncycles: 4\nmessages:\n  - language: en\n    subject: Fire\n    body: Leave the building\n    speak: Leave the building now\n",
        )
        .unwrap();
        assert_eq!(f.interval, Some(Duration::from_secs(120)));
        assert_eq!(f.cycles, Some(4));
        assert_eq!(f.messages[0].speak, "Leave the building now");
    }

    #[test]
    fn flags_make_a_message_and_a_missing_severity_is_named() {
        let Ok(m) = messages(
            &BroadcastFile::default(),
            &MessageArgs {
                subject: Some("Evacuate".into()),
                body: Some("Leave now".into()),
                language: "en".into(),
                ..Default::default()
            },
        ) else {
            panic!("a subject and a body make a message");
        };
        assert_eq!(
            m[0].speak, "Leave now",
            "the body is spoken when --speak is not given"
        );
        assert!(messages(&BroadcastFile::default(), &MessageArgs::default()).is_err());
        assert_eq!(Severity::parse("Extreme"), Some(Severity::Extreme));
        assert_eq!(Severity::parse("loud"), None);
    }
}
