//! Field checks shared by intake, the contact directory and the command line.
//! Each returns the reason a value is wrong, in words a caller can act on.

/// An email address a mail server will take: `local@domain.tld`, at most 254
/// characters, no spaces, no display name. The checks below name what is
/// wrong; the last is delivery's own parser (`lettre::Address`), so no
/// address passes here that delivery would then refuse.
pub fn email(s: &str) -> Result<(), String> {
    plain_email(s)?;
    s.parse::<lettre::Address>()
        .map(|_| ())
        .map_err(|e| format!("{} is not an address a mail server takes: {e}", quoted(s)))
}

fn plain_email(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.len() > 254 {
        return Err("is longer than 254 characters".into());
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return Err(format!("{} has no @", quoted(s)));
    };
    if local.is_empty() || local.len() > 64 {
        return Err("must have 1 to 64 characters before the @".into());
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("has a misplaced dot before the @".into());
    }
    let local_ok = local
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b));
    if !local_ok {
        return Err("has a character not allowed before the @".into());
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err("domain needs a dot, e.g. example.org".into());
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(format!(
                "domain {} is not a valid host name",
                quoted(domain)
            ));
        }
    }
    Ok(())
}

/// An E.164 phone number: `+`, a country code not starting with 0, and 8 to
/// 15 digits in all.
pub fn e164(s: &str) -> Result<(), String> {
    let Some(digits) = s.strip_prefix('+') else {
        return Err("must be in E.164 form, starting with + and the country code".into());
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must contain only digits after the +".into());
    }
    if !(8..=15).contains(&digits.len()) {
        return Err(format!("must have 8 to 15 digits, has {}", digits.len()));
    }
    if digits.starts_with('0') {
        return Err("country code cannot start with 0".into());
    }
    Ok(())
}

/// A BCP 47 language tag such as `en`, `fr-CA` or `zh-Hant`.
pub fn language(s: &str) -> Result<(), String> {
    let mut parts = s.split('-');
    let primary = parts.next().unwrap_or_default();
    if !(2..=3).contains(&primary.len()) || !primary.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!(
            "{} is not a language tag such as en or fr-CA",
            quoted(s)
        ));
    }
    for sub in parts {
        if !(1..=8).contains(&sub.len()) || !sub.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!(
                "{} is not a language tag such as en or fr-CA",
                quoted(s)
            ));
        }
    }
    Ok(())
}

/// An IANA time zone such as `Europe/London`.
pub fn time_zone(s: &str) -> Result<(), String> {
    s.parse::<chrono_tz::Tz>().map(|_| ()).map_err(|_| {
        format!(
            "{} is not an IANA time zone such as Europe/London",
            quoted(s)
        )
    })
}

/// Values are echoed only when short, and never whole if they might be
/// personal data in a log.
fn quoted(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{:?}…", s.chars().take(40).collect::<String>())
    } else {
        format!("{s:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in [
            "a@b.co",
            "first.last+tag@sub.example.org",
            "o'neil@example.ie",
        ] {
            assert!(email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "plain",
            "a@b",
            "@b.co",
            "a@.co",
            "a..b@c.co",
            "a b@c.co",
            "a@-b.co",
            "a@b_c.co",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_address_accepted_here_is_one_delivery_can_send_to() {
        for s in [
            "a@b.co",
            "first.last+tag@sub.example.org",
            "x!#$%&*=?^_`{|}~@example.org",
            "Alice <alice@example.org>",
            "a@b.co ",
        ] {
            if email(s).is_ok() {
                assert!(s.parse::<lettre::Address>().is_ok(), "{s}");
            }
        }
    }

    #[test]
    fn phone_numbers() {
        for ok in ["+447700900123", "+15550100000", "+33612345678"] {
            assert!(e164(ok).is_ok(), "{ok}");
        }
        for bad in [
            "07700900123",
            "+44 7700 900123",
            "+0123456789",
            "+1234567",
            "+1234567890123456",
        ] {
            assert!(e164(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn languages_and_zones() {
        assert!(language("en").is_ok());
        assert!(language("fr-CA").is_ok());
        assert!(language("english").is_err());
        assert!(language("").is_err());
        assert!(time_zone("Europe/London").is_ok());
        assert!(time_zone("Mars/Olympus").is_err());
    }
}
