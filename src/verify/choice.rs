//! Multiple-choice answers: reading letters ("B", "(B)", "B. text", "B, D") and matching
//! a letter against option text when the row carries its `options`.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;

static ANSWER_LETTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)answer(?:\s+is)?\s*[:：]?\s*(?:option\s+)?\(?\s*([A-Z](?:\s*(?:,|and|&|/)\s*[A-Z])*)\s*\)?(?:[.:)\s,]|$)")
        .unwrap_or_else(|e| panic!("built-in regex: {e}"))
});
static SINGLE_WITH_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:\(([A-Za-z])\)|([A-Za-z])[.:)])\s*\S")
        .unwrap_or_else(|e| panic!("built-in regex: {e}"))
});
static PAREN_LETTER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\(([A-Z])\)").unwrap_or_else(|e| panic!("built-in regex: {e}")));

/// Letters named by a short answer: `B`, `(b)`, `B.`, `B: 12 cm`, `B, D`, `B and D`.
/// `None` when the text is not a letter answer.
pub fn letters(answer: &str) -> Option<BTreeSet<char>> {
    let t = answer.trim().trim_end_matches(['.', ' ']);
    // A list of single letters (one or more).
    let normalised = t.replace(" and ", ",").replace(['&', '/', ';'], ",");
    let mut set = BTreeSet::new();
    let mut is_list = true;
    for part in normalised
        .split([',', ' '])
        .map(|p| p.trim().trim_matches(['(', ')']))
        .filter(|p| !p.is_empty())
    {
        let mut cs = part.chars();
        match (cs.next(), cs.next()) {
            (Some(c), None) if c.is_ascii_alphabetic() => {
                set.insert(c.to_ascii_uppercase());
            }
            _ => {
                is_list = false;
                break;
            }
        }
    }
    if is_list && !set.is_empty() {
        return Some(set);
    }
    // One letter followed by its option text: "B. 12 cm", "(B) 12 cm", "B: 12".
    SINGLE_WITH_TEXT
        .captures(t)
        .and_then(|c| c.get(1).or_else(|| c.get(2)))
        .and_then(|m| m.as_str().chars().next())
        .map(|c| BTreeSet::from([c.to_ascii_uppercase()]))
}

/// The letter of the option whose text equals `text` (case- and space-insensitive).
pub fn option_letter(text: &str, options: &[String]) -> Option<char> {
    let key = squash(text);
    options
        .iter()
        .position(|o| squash(o) == key)
        .and_then(|i| char::from_u32('A' as u32 + i as u32))
}

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect::<String>()
        .trim_end_matches('.')
        .to_string()
}

/// Letters for an answer: letters it names, or the option its text equals.
pub fn resolve(answer: &str, options: Option<&[String]>) -> Option<BTreeSet<char>> {
    if let Some(opts) = options {
        if let Some(l) = option_letter(answer, opts) {
            return Some(BTreeSet::from([l]));
        }
    }
    letters(answer)
}

/// Pulls the chosen letter(s) out of free text: "the answer is (B)", "Answer: B, D",
/// else the last "(B)", else a response that is just a letter.
pub fn extract_from_text(text: &str) -> Option<String> {
    if let Some(c) = ANSWER_LETTER.captures_iter(text).last() {
        return c.get(1).map(|m| m.as_str().to_string());
    }
    if let Some(c) = PAREN_LETTER.captures_iter(text).last() {
        return c.get(1).map(|m| m.as_str().to_string());
    }
    letters(text).map(|s| s.iter().map(char::to_string).collect::<Vec<_>>().join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> Option<BTreeSet<char>> {
        Some(s.chars().collect())
    }

    #[test]
    fn single_letters_in_common_spellings() {
        assert_eq!(letters("B"), set("B"));
        assert_eq!(letters("(b)"), set("B"));
        assert_eq!(letters("B. 12 cm"), set("B"));
    }

    #[test]
    fn multi_answer_letters() {
        assert_eq!(letters("B, D"), set("BD"));
        assert_eq!(letters("D and B"), set("BD"));
    }

    #[test]
    fn words_are_not_letters() {
        assert_eq!(letters("12 cm"), None);
        assert_eq!(letters("Yes"), None);
    }

    #[test]
    fn option_text_maps_to_its_letter() {
        let opts = vec!["3".to_string(), "12 cm".to_string()];
        assert_eq!(resolve("12cm", Some(&opts)), set("B"));
    }

    #[test]
    fn letter_is_found_in_free_text() {
        assert_eq!(extract_from_text("so the answer is (C)."), Some("C".into()));
        assert_eq!(extract_from_text("Answer: B, D"), Some("B, D".into()));
        assert_eq!(extract_from_text("I pick (A) over (D)"), Some("D".into()));
    }
}
