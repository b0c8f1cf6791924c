//! Which component a task addresses. A sidecar acts on its own component only, so a task that names another one
//! ("scale front-end to 5" sent to catalogue) is refused instead of being carried out on the wrong component.
//!
//! Names are looked for where English puts the object of a task: right after the verb ("restart carts"), after
//! "of / for / on" ("the latency of orders"), before "'s" ("front-end's replicas"), and as the subject of a
//! question ("is carts healthy?"). A run of words there that are neither the planner's vocabulary nor common
//! filler is a name. The own component counts in every written form: `catalogue`, `Catalogue`, `front-end`,
//! `front end`, `frontend`, and "your service", "this component", "it".

use std::sync::LazyLock;

use acv_protocol::ComponentName;
use regex::Regex;

use super::words::is_known;

/// Written forms of a component name: as is, hyphens as spaces, hyphens dropped (lowercase).
pub fn name_variants(c: &ComponentName) -> Vec<String> {
    let name = c.as_str().to_ascii_lowercase();
    let mut v = vec![name.clone(), name.replace('-', " "), name.replace('-', "")];
    v.dedup();
    v
}

/// Placeholder the own name is rewritten to before looking for names.
const SELF: &str = "selfcomponent";

/// Words that are never a component name where one could stand.
#[rustfmt::skip]
const FILLER: &[&str] = &[
    SELF, "a", "an", "the", "your", "yours", "yourself", "you", "it", "its", "this", "that", "these", "those", "my",
    "our", "own", "me", "us", "all", "every", "each", "everything", "anything", "something", "now", "please", "pls",
    "up", "down", "out", "in", "back", "off", "over", "on", "to", "by", "from", "with", "and", "or", "whether",
    "if", "how", "what", "whats", "much", "many", "last", "previous", "prior", "earlier", "old", "new", "newest",
    "current", "immediately", "asap", "quickly", "right", "away", "again", "some", "more", "less", "fewer", "extra",
    "one", "pod", "pods", "app", "application", "apps", "system", "cluster", "there", "here", "things", "thing",
    "stuff", "while", "time", "today", "cpu", "ram", "mem", "p99", "p50", "rps", "qps", "env", "var", "tag",
    "limit", "load", "ok", "okay", "fine", "good", "bad", "slow", "fast", "alive", "doing", "working", "up",
    "we", "i", "they", "them", "is", "are", "was", "be", "been", "do", "does", "did", "can", "could", "would",
    "should", "will", "shall", "must", "need", "needs", "kindly", "just", "also", "then", "too", "very", "still",
    "whole", "entire", "same", "next", "first", "any", "no", "not", "per", "at", "as", "for", "of", "so",
    "state", "config", "configuration", "settings", "metrics", "numbers", "stats", "details", "info", "logs",
    "endpoint", "endpoints", "port", "node", "nodes", "namespace", "use", "have", "has", "run", "handle", "serve",
    "take", "get", "got", "consume", "look", "looks", "seem", "seems", "behave", "hour", "hours", "day", "days",
    "week", "moment", "bit", "production", "prod", "staging", "kubernetes", "k8s", "dashboard", "yaml", "file",
    "manifest", "whole", "both", "other", "others", "requests", "users", "customers", "load", "using", "handling",
    "getting", "doing", "serving", "processing", "working", "taking", "consuming", "performing", "behaving",
    "responding", "going", "looking", "receiving", "seeing", "having", "logging", "everyone", "anyone", "someone",
    // Verbs after "does / is" that are not a name: "if any of this does not hold".
    "hold", "holds", "held", "exist", "exists", "apply", "applies", "happen", "happens", "matter", "matters",
    "fail", "fails", "failing", "work", "works",
    // Values, as in "the variable logger_flag is true".
    "true", "false", "yes", "enabled", "disabled", "set", "unset", "null", "none", "empty",
];

static OWN_HINTS: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"\b(your|this|the)\s+(own\s+)?(micro)?service(\s+component)?\b|\bthis\s+component\b|\byourself\b",
    )
    .ok()
});
/// Words after which the object of a task stands.
static SLOTS: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(concat!(
        r"\b(?:scale|restart|reboot|bounce|recycle|roll|rollback|revert|upgrade|downgrade|update|redeploy|deploy|",
        r"create|check|inspect|diagnose|monitor|fix|heal|stop|start|resize|of|for|on|is|are|does|about)\s+",
    ))
    .ok()
});
/// The words of a slot: up to five, stopping at anything that is not a word (digits, punctuation).
static PHRASE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9_-]*(?:\s+[a-z][a-z0-9_-]*){0,4}").ok());
static POSSESSIVE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\b([a-z][a-z0-9_-]*)(?:'s|s')\s").ok());

/// `v0`, `v1`: the start of a version like v0.3.4.
fn is_version(w: &str) -> bool {
    w.strip_prefix('v')
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

fn is_name_word(w: &str) -> bool {
    !FILLER.contains(&w) && !is_known(w) && !w.ends_with("ly") && !is_version(w)
}

/// Components other than `own` that the (normalised, lowercase) task names where its object stands, or empty when
/// it addresses the own component or none in particular. A task that names the own component in a slot as well
/// ("restart catalogue and carts", from a manager's split) is the own component's.
pub(super) fn other_components(n: &str, own: &ComponentName) -> Vec<String> {
    let mut text = format!("{} ", n.to_ascii_lowercase());
    for v in name_variants(own) {
        if let Ok(r) = Regex::new(&format!(r"\b{}\b", regex::escape(&v))) {
            text = r.replace_all(&text, SELF).into_owned();
        }
    }
    if let Some(r) = OWN_HINTS.as_ref() {
        text = r.replace_all(&text, SELF).into_owned();
    }
    let mut named: Vec<String> = Vec::new();
    let mut own_named = false;
    let mut consider = |phrase: &str| {
        // Skip leading filler ("the", "your", "up"), then take the run of name words.
        let words: Vec<&str> = phrase.split_whitespace().collect();
        let mut i = 0;
        while i < words.len() && FILLER.contains(&words[i]) && words[i] != SELF {
            i += 1;
        }
        let mut run: Vec<&str> = Vec::new();
        for w in &words[i..] {
            if *w == SELF {
                own_named = true;
                break;
            }
            if w == &"and" && !run.is_empty() {
                let name = run.join(" ");
                if !named.contains(&name) {
                    named.push(name);
                }
                run.clear();
                continue;
            }
            if is_name_word(w) {
                run.push(*w);
            } else {
                break;
            }
        }
        if !run.is_empty() {
            let name = run.join(" ");
            if !named.contains(&name) {
                named.push(name);
            }
        }
    };
    if let (Some(slots), Some(phrase)) = (SLOTS.as_ref(), PHRASE.as_ref()) {
        for slot in slots.find_iter(&text) {
            if let Some(p) = phrase.find(&text[slot.end()..]) {
                consider(p.as_str());
            }
        }
    }
    if let Some(r) = POSSESSIVE.as_ref() {
        for c in r.captures_iter(&text) {
            consider(&c[1]);
        }
    }
    if own_named { Vec::new() } else { named }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn others(text: &str, own: &str) -> Vec<String> {
        other_components(&text.to_ascii_lowercase(), &ComponentName::new(own).unwrap())
    }

    #[test]
    fn own_forms_and_other_names() {
        assert_eq!(others("scale front-end to 5", "catalogue"), ["front-end"]);
        assert_eq!(others("Restart the front end", "catalogue"), ["front end"]);
        assert!(others("Restart the front end", "front-end").is_empty());
        assert!(others("scale Catalogue to 5", "catalogue").is_empty());
        assert!(others("restart your service", "catalogue").is_empty());
        assert!(
            others(
                "Report the cpu usage of your microservice component.",
                "catalogue"
            )
            .is_empty()
        );
        assert_eq!(
            others("what is the p99 latency of orders?", "catalogue"),
            ["orders"]
        );
        assert_eq!(others("carts's memory usage", "catalogue"), ["carts"]);
        assert!(others("restart catalogue and carts", "catalogue").is_empty());
        assert!(others("scale out by 2 for now", "catalogue").is_empty());
        assert!(others("set the environment variable logger_flag to true", "catalogue").is_empty());
        assert!(
            others(
                "update your deployment so that the environment variable logger_flag is true.",
                "catalogue"
            )
            .is_empty(),
            "a value after \"is\" is not a component"
        );
        assert!(others("is the variable debug enabled?", "catalogue").is_empty());
        assert!(
            others(
                "if any of this does not hold, find the cause, fix it, check again and report.",
                "catalogue"
            )
            .is_empty(),
            "the harness's health-check task once came back as \"Not mine: this task is for hold\""
        );
        assert_eq!(others("check the memory of orders", "catalogue"), ["orders"]);
        assert_eq!(others("how much memory does carts use", "catalogue"), ["carts"]);
        assert!(others("keep it running for the next hour", "catalogue").is_empty());
    }
}
