//! What the client knows between connections: which symbols the bot wants
//! ([`Wanted`]), the last seq it was given of each and the epoch those seqs
//! belong to ([`Tracker`]), and the requests that bring a new connection
//! back to the same place ([`plan`]).
//!
//! All of it is pure and clock-free, so the rules that make "every tick
//! once, every hole reported" true are unit-tested here: a seq at or below
//! the last one is a duplicate and never delivered; a jump is a [`Seen::After`]
//! naming the exact missed range; a new epoch forgets every seq, so a stale
//! one is never taken for a continuation.
//!
//! Memory: one entry per symbol the bot follows (the server caps that at its
//! `max_symbols`, 1,024 by default), plus the names the bot unsubscribed from
//! while following `*`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What a tick's seq means, given the last one delivered of its symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// The first tick of the symbol in this epoch (a snapshot, usually).
    First,
    /// The next seq: deliver.
    Next,
    /// Seen already (a replay overlapping what was delivered): drop it.
    Duplicate,
    /// Deliver, but the seqs `from..=to` in between were missed.
    After { from: u64, to: u64 },
}

/// The last seq delivered per symbol, and the epoch they belong to.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    epoch: Option<String>,
    last: HashMap<String, u64>,
}

impl Tracker {
    /// The epoch of the seqs held, once a server has welcomed the client.
    pub(crate) fn epoch(&self) -> Option<&str> {
        self.epoch.as_deref()
    }

    /// A `welcome` named `epoch`. When it is not the epoch the held seqs
    /// belong to, those seqs mean nothing any more: they are forgotten and
    /// their symbols returned (they cannot be recovered).
    pub(crate) fn welcome(&mut self, epoch: &str) -> Option<Vec<String>> {
        match &self.epoch {
            Some(e) if e == epoch => None,
            Some(_) => {
                self.epoch = Some(epoch.to_string());
                let mut lost: Vec<String> = self.last.drain().map(|(s, _)| s).collect();
                lost.sort_unstable();
                Some(lost)
            }
            None => {
                self.epoch = Some(epoch.to_string());
                None
            }
        }
    }

    /// Classifies a tick of `sym` with `seq` and, unless it is a duplicate,
    /// records it as the last one delivered.
    pub(crate) fn see(&mut self, sym: &str, seq: u64) -> Seen {
        match self.last.get_mut(sym) {
            None => {
                self.last.insert(sym.to_string(), seq);
                Seen::First
            }
            Some(last) if seq <= *last => Seen::Duplicate,
            Some(last) => {
                let prev = std::mem::replace(last, seq);
                if seq == prev + 1 {
                    Seen::Next
                } else {
                    Seen::After {
                        from: prev + 1,
                        to: seq - 1,
                    }
                }
            }
        }
    }

    /// The last seq delivered of `sym`.
    pub(crate) fn last(&self, sym: &str) -> Option<u64> {
        self.last.get(sym).copied()
    }

    /// Forgets `sym` (unsubscribed: a later subscribe starts afresh).
    pub(crate) fn forget(&mut self, sym: &str) {
        self.last.remove(sym);
    }

    pub(crate) fn forget_all(&mut self) {
        self.last.clear();
    }

    /// Every symbol with a seq, sorted.
    pub(crate) fn seqs(&self) -> BTreeMap<&str, u64> {
        self.last.iter().map(|(s, &q)| (s.as_str(), q)).collect()
    }
}

/// The symbols the bot asked for: names, or `*` (every symbol) minus the
/// names unsubscribed since.
#[derive(Debug, Default, Clone)]
pub(crate) struct Wanted {
    all: bool,
    names: BTreeSet<String>,
    excluded: BTreeSet<String>,
}

impl Wanted {
    /// Adds symbols; returns the ones not wanted before.
    pub(crate) fn add(&mut self, symbols: &[String]) -> Vec<String> {
        let mut added = Vec::new();
        for s in symbols {
            if s == "*" {
                self.all = true;
                self.excluded.clear();
            } else if !self.wants(s) {
                self.excluded.remove(s);
                self.names.insert(s.clone());
                added.push(s.clone());
            } else {
                self.names.insert(s.clone());
            }
        }
        added
    }

    /// Removes symbols (`*`: all of them).
    pub(crate) fn remove(&mut self, symbols: &[String]) {
        for s in symbols {
            if s == "*" {
                *self = Wanted::default();
                return;
            }
            self.names.remove(s);
            if self.all {
                self.excluded.insert(s.clone());
            }
        }
    }

    /// Drops names the server does not know (they are never asked for again).
    pub(crate) fn drop_unknown(&mut self, symbols: &[String]) {
        for s in symbols {
            if s != "*" {
                self.names.remove(s);
            }
        }
    }

    pub(crate) fn wants(&self, sym: &str) -> bool {
        self.names.contains(sym) || (self.all && !self.excluded.contains(sym))
    }
}

/// A request the client will send, before it gets its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Planned {
    /// Subscribe to `symbols`, resuming after `from` (with the tracker's epoch).
    Subscribe {
        symbols: Vec<String>,
        from: Option<BTreeMap<String, u64>>,
    },
    Unsubscribe {
        symbols: Vec<String>,
    },
    /// The instrument list (`?format=binary` needs it to name symbol ids).
    Symbols,
}

/// Bytes of a request besides its symbols: `op`, `id`, the brackets and
/// `epoch` (whose text is added).
const OVERHEAD: usize = 96;

/// Splits `symbols` into runs whose request stays under `max_message` bytes
/// (the server closes with 1009 above it). `with_from`: each symbol also
/// carries a seq in `from`.
pub(crate) fn chunks(
    symbols: Vec<String>,
    with_from: bool,
    epoch_len: usize,
    max_message: usize,
) -> Vec<Vec<String>> {
    let budget = max_message.saturating_sub(OVERHEAD + epoch_len);
    let cost = |s: &String| {
        let quoted = s.len() + 3; // "S",
        if with_from {
            quoted + quoted + 21 // and "S":<20 digits>,
        } else {
            quoted
        }
    };
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut used = 0;
    for s in symbols {
        let c = cost(&s);
        match out.last_mut() {
            Some(run) if used + c <= budget => run.push(s),
            _ => {
                out.push(vec![s]);
                used = 0;
            }
        }
        used += c;
    }
    out
}

/// The requests that bring a fresh connection to what the bot wants: first
/// the resumes (symbols with a seq, `from` that seq: they must come before a
/// `*`, or `*` would start them afresh), then plain subscribes, then `*`,
/// then the names unsubscribed from `*`.
pub(crate) fn plan(wanted: &Wanted, tracker: &Tracker, max_message: usize) -> Vec<Planned> {
    let epoch_len = tracker.epoch().map_or(0, str::len);
    let seqs = tracker.seqs();
    let (resume, fresh): (Vec<String>, Vec<String>) = {
        let mut with_seq: Vec<String> = seqs
            .keys()
            .filter(|s| wanted.wants(s))
            .map(|s| s.to_string())
            .collect();
        with_seq.sort_unstable();
        let fresh = wanted
            .names
            .iter()
            .filter(|s| !seqs.contains_key(s.as_str()))
            .cloned()
            .collect();
        (with_seq, fresh)
    };
    let mut out = Vec::new();
    for run in chunks(resume, true, epoch_len, max_message) {
        let from = run.iter().map(|s| (s.clone(), seqs[s.as_str()])).collect();
        out.push(Planned::Subscribe {
            symbols: run,
            from: Some(from),
        });
    }
    for run in chunks(fresh, false, 0, max_message) {
        out.push(Planned::Subscribe {
            symbols: run,
            from: None,
        });
    }
    if wanted.all {
        out.push(Planned::Subscribe {
            symbols: vec!["*".into()],
            from: None,
        });
        let excluded = wanted.excluded.iter().cloned().collect();
        for run in chunks(excluded, false, 0, max_message) {
            out.push(Planned::Unsubscribe { symbols: run });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_protocol::{Id, Request};

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn duplicates_are_dropped_and_gaps_named_exactly() {
        let mut t = Tracker::default();
        t.welcome("e1");
        assert_eq!(t.see("A", 10), Seen::First);
        assert_eq!(t.see("A", 11), Seen::Next);
        assert_eq!(t.see("A", 11), Seen::Duplicate);
        assert_eq!(t.see("A", 3), Seen::Duplicate, "never goes back");
        assert_eq!(t.see("A", 15), Seen::After { from: 12, to: 14 });
        assert_eq!(t.see("A", 17), Seen::After { from: 16, to: 16 });
        assert_eq!(t.see("A", 18), Seen::Next);
        // Symbols are independent.
        assert_eq!(t.see("B", 1), Seen::First);
        assert_eq!(t.last("A"), Some(18));
        t.forget("A");
        assert_eq!(t.see("A", 5), Seen::First, "after an unsubscribe: afresh");
    }

    #[test]
    fn a_new_epoch_forgets_every_seq_so_none_is_taken_for_a_continuation() {
        let mut t = Tracker::default();
        assert_eq!(t.welcome("e1"), None, "the first welcome loses nothing");
        t.see("A", 500);
        t.see("B", 7);
        assert_eq!(t.welcome("e1"), None, "same run: seqs kept");
        assert_eq!(t.last("A"), Some(500));
        assert_eq!(t.welcome("e2"), Some(names(&["A", "B"])));
        assert_eq!(t.epoch(), Some("e2"));
        // Seq 3 of the new run is a first tick, not a duplicate of 500.
        assert_eq!(t.see("A", 3), Seen::First);
        assert_eq!(t.see("A", 4), Seen::Next);
        assert!(!t.seqs().contains_key("B"));
    }

    #[test]
    fn wanted_follows_names_and_the_wildcard() {
        let mut w = Wanted::default();
        assert!(!w.wants("A"));
        assert_eq!(w.add(&names(&["A", "B"])), names(&["A", "B"]));
        assert_eq!(w.add(&names(&["B", "C"])), names(&["C"]));
        w.remove(&names(&["B"]));
        assert!(w.wants("A") && !w.wants("B") && !w.wants("Z"));
        w.add(&names(&["*"]));
        assert!(w.wants("Z"));
        w.remove(&names(&["Z"]));
        assert!(!w.wants("Z") && w.wants("Y"));
        assert_eq!(w.add(&names(&["Z"])), names(&["Z"]));
        w.remove(&names(&["*"]));
        assert!(!w.wants("A") && !w.wants("Y"));
        w.add(&names(&["A", "NOPE"]));
        w.drop_unknown(&names(&["NOPE"]));
        assert!(!w.wants("NOPE"));
    }

    #[test]
    fn a_reconnect_resumes_what_has_seqs_first_then_the_rest() {
        let mut t = Tracker::default();
        t.welcome("3f9a0c1d5e7b2a48");
        let mut w = Wanted::default();
        w.add(&names(&["A", "B", "C"]));
        t.see("A", 1042);
        t.see("C", 77);
        let p = plan(&w, &t, 4096);
        assert_eq!(
            p,
            vec![
                Planned::Subscribe {
                    symbols: names(&["A", "C"]),
                    from: Some([("A".to_string(), 1042), ("C".to_string(), 77)].into()),
                },
                Planned::Subscribe {
                    symbols: names(&["B"]),
                    from: None
                },
            ]
        );
        // With the wildcard: resumes, then `*`, then what was left out of it.
        w.add(&names(&["*"]));
        w.remove(&names(&["B"]));
        let p = plan(&w, &t, 4096);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(matches!(&p[0], Planned::Subscribe { from: Some(_), .. }));
        assert_eq!(
            p[1],
            Planned::Subscribe {
                symbols: names(&["*"]),
                from: None
            }
        );
        assert_eq!(
            p[2],
            Planned::Unsubscribe {
                symbols: names(&["B"])
            }
        );
    }

    #[test]
    fn big_resumes_are_split_under_the_message_limit() {
        let mut t = Tracker::default();
        let epoch = "3f9a0c1d5e7b2a48";
        t.welcome(epoch);
        let mut w = Wanted::default();
        let all: Vec<String> = (0..1024).map(|i| format!("SYMBOL{i}")).collect();
        w.add(&all);
        for s in &all[..700] {
            t.see(s, u64::MAX - 1);
        }
        let p = plan(&w, &t, 4096);
        assert!(p.len() > 2, "{}", p.len());
        let mut seen = BTreeSet::new();
        for req in p {
            let Planned::Subscribe { symbols, from } = req else {
                panic!()
            };
            seen.extend(symbols.iter().cloned());
            let json = Request::Subscribe {
                id: Some(Id::Int(i64::MAX)),
                epoch: from.as_ref().map(|_| epoch.to_string()),
                symbols,
                from,
                throttle_ms: None,
            }
            .to_json();
            assert!(json.len() <= 4096, "{} bytes", json.len());
        }
        assert_eq!(seen.len(), 1024, "every symbol asked for once");
    }
}
