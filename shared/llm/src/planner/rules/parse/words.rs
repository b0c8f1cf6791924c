//! Word-level normalisation before the grammar runs: numbers written as words become digits ("three" → 3,
//! "twenty-five" → 25, "another" → "1 more"), and near-misses of the planner's own vocabulary are corrected
//! ("restrat" → "restart", "replcias" → "replicas"). Case is kept so that values (env values, image names) survive;
//! the grammar lowercases afterwards.

use std::sync::LazyLock;

use regex::Regex;

/// Words the grammar knows. Typos are corrected towards these, and the component check treats them as never being
/// a component name.
#[rustfmt::skip]
pub(super) const VOCABULARY: &[&str] = &[
    // actions
    "scale", "scaling", "replica", "replicas", "instance", "instances", "restart", "reboot", "rollback", "revert",
    "downgrade", "upgrade", "update", "change", "switch", "deploy", "redeploy", "create", "report", "measure",
    "collect", "increase", "decrease", "reduce", "lower", "raise", "improve", "check", "verify", "inspect",
    "diagnose", "environment", "variable", "variables", "image", "version", "release", "restore", "previous",
    "limit", "limits", "resources", "memory", "latency", "percentile", "throughput", "requests", "request",
    "second", "seconds", "minute", "minutes", "millicores", "millicore", "cores", "error", "errors", "health",
    "healthy", "status", "performance", "normal", "usage", "deployment", "microservice", "service", "component",
    "container", "containers", "average", "current", "currently", "revision", "revisions", "setting", "value",
    "please", "immediately", "traffic", "response", "latest", "faster", "slower", "autoscaling", "autoscaler",
    "percent", "number", "delete", "remove", "fewer", "additional", "running", "ready",
];

static WORD: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"[A-Za-z]+(?:-[A-Za-z]+)*").ok());
static ANOTHER: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)\b(?:another|an? (?:extra|additional|further))\b").ok());
static HALF: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"(?i)\bhalf an? ").ok());
static COUPLE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"(?i)\ba couple(?: of)?\b").ok());

fn small(w: &str) -> Option<u64> {
    let n = match w {
        "zero" => 0,
        "one" => 1,
        "two" => 2,
        "three" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "eleven" => 11,
        "twelve" | "dozen" => 12,
        "thirteen" => 13,
        "fourteen" => 14,
        "fifteen" => 15,
        "sixteen" => 16,
        "seventeen" => 17,
        "eighteen" => 18,
        "nineteen" => 19,
        "twenty" => 20,
        "thirty" => 30,
        "forty" => 40,
        "fifty" => 50,
        "sixty" => 60,
        "seventy" => 70,
        "eighty" => 80,
        "ninety" => 90,
        _ => return None,
    };
    Some(n)
}

fn is_number_word(w: &str) -> bool {
    let w = w.to_ascii_lowercase();
    small(&w).is_some()
        || matches!(w.as_str(), "hundred" | "thousand")
        || w.split('-').all(|p| small(p).is_some()) && w.contains('-')
}

/// The value of a run of number words ("three hundred and fifty", "twenty-five"), if it is one.
fn value_of(words: &[String]) -> Option<u64> {
    let mut total = 0u64;
    let mut current = 0u64;
    let mut any = false;
    for w in words {
        let w = w.to_ascii_lowercase();
        if w == "and" {
            continue;
        }
        if w == "hundred" {
            current = current.max(1).checked_mul(100)?;
        } else if w == "thousand" {
            total = total.checked_add(current.max(1).checked_mul(1000)?)?;
            current = 0;
        } else {
            for part in w.split('-') {
                current = current.checked_add(small(part)?)?;
            }
        }
        any = true;
    }
    any.then_some(total + current)
}

fn replace_all(re: &LazyLock<Option<Regex>>, text: &str, with: &str) -> String {
    match re.as_ref() {
        Some(r) => r.replace_all(text, with).into_owned(),
        None => text.to_owned(),
    }
}

/// Digits for number words, "1 more" for "another", and typos fixed; `keep` lists words never to correct (the own
/// component's name parts).
pub(super) fn normalize(text: &str, keep: &[String]) -> String {
    let text = replace_all(&ANOTHER, text, "1 more");
    let text = replace_all(&HALF, &text, "0.5 ");
    let text = replace_all(&COUPLE, &text, "2");
    let Some(word) = WORD.as_ref() else {
        return text;
    };
    // Tokens: (start, end, text) of every word; runs of number words collapse to digits.
    let words: Vec<(usize, usize, &str)> = word
        .find_iter(&text)
        .map(|m| (m.start(), m.end(), m.as_str()))
        .collect();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    let mut i = 0;
    while i < words.len() {
        let (start, end, w) = words[i];
        // A word glued to digits or an underscore is part of an identifier or a quantity: leave it.
        let glued = text[..start].ends_with(|c: char| c == '_' || c.is_ascii_digit())
            || text[end..].starts_with(|c: char| c == '_' || c.is_ascii_digit());
        if !glued && is_number_word(w) && !(w.eq_ignore_ascii_case("one") && followed_by_of(&text[end..])) {
            let mut j = i + 1;
            let mut last_end = end;
            while j < words.len() {
                let (s, e, next) = words[j];
                let gap = &text[last_end..s];
                if !gap.trim().is_empty() {
                    break;
                }
                let and_then_number = next.eq_ignore_ascii_case("and")
                    && words.get(j + 1).is_some_and(|(_, _, n)| is_number_word(n));
                if is_number_word(next) || and_then_number {
                    last_end = e;
                    j += 1;
                } else {
                    break;
                }
            }
            let run: Vec<String> = words[i..j].iter().map(|(_, _, w)| (*w).to_owned()).collect();
            if let Some(v) = value_of(&run) {
                out.push_str(&text[pos..start]);
                out.push_str(&v.to_string());
                pos = last_end;
                i = j;
                continue;
            }
        }
        if !glued && let Some(fixed) = correct(w, keep) {
            out.push_str(&text[pos..start]);
            out.push_str(fixed);
            pos = end;
        }
        i += 1;
    }
    out.push_str(&text[pos..]);
    out
}

/// "one of the replicas": not a count.
fn followed_by_of(rest: &str) -> bool {
    rest.trim_start().to_ascii_lowercase().starts_with("of ")
}

/// Whether `w` (lowercase) is a vocabulary word or one inflected ("deployed", "scales", "restarting").
pub(super) fn is_known(w: &str) -> bool {
    VOCABULARY.iter().any(|v| {
        w.strip_prefix(v)
            .is_some_and(|rest| ["", "s", "es", "d", "ed", "ing", "er", "ers"].contains(&rest))
    })
}

/// The vocabulary word `w` is a typo of, if it is unambiguously close to exactly one.
fn correct(w: &str, keep: &[String]) -> Option<&'static str> {
    let lower = w.to_ascii_lowercase();
    if lower.len() < 5 || w.contains('-') || VOCABULARY.contains(&lower.as_str()) || keep.contains(&lower) {
        return None;
    }
    if is_known(&lower) {
        return None; // "deployed", "scales", "restarting": a known word, inflected
    }
    let allowed = if lower.len() >= 8 { 2 } else { 1 };
    let mut best: Option<(&'static str, usize)> = None;
    let mut tie = false;
    for v in VOCABULARY {
        let d = strsim::osa_distance(&lower, v);
        if d > allowed {
            continue;
        }
        match best {
            Some((_, bd)) if d > bd => {}
            Some((_, bd)) if d == bd => tie = true,
            _ => {
                best = Some((*v, d));
                tie = false;
            }
        }
    }
    match best {
        Some((v, _)) if !tie => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    fn n(t: &str) -> String {
        normalize(t, &[])
    }

    #[test]
    fn numbers_as_words() {
        assert_eq!(n("scale to three replicas"), "scale to 3 replicas");
        assert_eq!(n("Twenty-five pods"), "25 pods");
        assert_eq!(n("under three hundred and fifty ms"), "under 350 ms");
        assert_eq!(n("add another replica"), "add 1 more replica");
        assert_eq!(n("a couple of instances"), "2 instances");
        assert_eq!(n("half a second"), "0.5 second");
        assert_eq!(n("restart one of the replicas"), "restart one of the replicas");
        assert_eq!(
            n("set env MODE_one=two_x"),
            "set env MODE_one=two_x",
            "identifiers stay"
        );
    }

    #[test]
    fn typos_towards_the_vocabulary() {
        assert_eq!(n("Restrat the sevice"), "restart the service");
        assert_eq!(n("sacle to 2 replcias"), "scale to 2 replicas");
        assert_eq!(n("set the enviroment varible"), "set the environment variable");
        assert_eq!(n("report the latnecy"), "report the latency");
        // Unknown words far from the vocabulary stay as they are, and so do protected ones.
        assert_eq!(n("scale front-end and carts"), "scale front-end and carts");
        assert_eq!(normalize("restore", &["restore".into()]), "restore");
        assert_eq!(
            n("which version is deployed"),
            "which version is deployed",
            "inflections stay"
        );
    }
}
