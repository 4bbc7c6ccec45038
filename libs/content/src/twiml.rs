//! The TwiML a call reads out. Every text and attribute is escaped, so a
//! message holding `<`, `&` or quotes cannot change what the provider is
//! told to do.

/// The message read out in `language` (`en` when empty).
pub fn say(text: &str, language: &str) -> String {
    format!(
        "<Response><Say language=\"{}\">{}</Say></Response>",
        xml_escape(lang(language)),
        xml_escape(text)
    )
}

/// The message read out while the provider listens for one key, which it
/// posts to `action` (`Digits`). A call that ends without a key confirms
/// nothing: "completed" may be voicemail.
pub fn say_and_wait_for_a_key(text: &str, language: &str, action: &str) -> String {
    format!(
        "<Response><Gather input=\"dtmf\" numDigits=\"1\" timeout=\"10\" method=\"POST\" action=\"{}\"><Say language=\"{}\">{}</Say></Gather></Response>",
        xml_escape(action),
        xml_escape(lang(language)),
        xml_escape(text)
    )
}

fn lang(language: &str) -> &str {
    if language.is_empty() { "en" } else { language }
}

pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attributes_cannot_break_out_of_the_script() {
        let t = say("Flood <now> & \"leave\"", "");
        assert_eq!(
            t,
            "<Response><Say language=\"en\">Flood &lt;now&gt; &amp; &quot;leave&quot;</Say></Response>"
        );
        let g = say_and_wait_for_a_key("Press 1", "fr\"", "https://h/k?a=1&b=2");
        assert!(g.contains("action=\"https://h/k?a=1&amp;b=2\""), "{g}");
        assert!(g.contains("language=\"fr&quot;\""), "{g}");
    }
}
