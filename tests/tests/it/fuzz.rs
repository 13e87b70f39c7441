//! Property tests over the parsers that take hostile input: the event contract, NDJSON framing,
//! the SQL guard and Delta Sharing's range header. Each runs on random bytes and on random edits
//! of a checked-in corpus (`fuzz/corpus/`, valid and nasty inputs); none may panic, and each
//! keeps its promise. `PROPTEST_CASES` bounds the run (256 cases per property by default).

use std::path::Path;

use gata_contract::{Event, EventKind, Limits};
use gata_ingest::{Framing, split_events};
use gata_marketplace::sharing::byte_range;
use gata_query_api::sql::check_read_only;
use proptest::prelude::*;

/// Every file of `fuzz/corpus/<dir>`.
fn corpus(dir: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// A corpus entry with up to 8 byte edits (overwrite, insert or delete at a position).
fn mutated(dir: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = corpus(dir);
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..8);
    (prop::sample::select(seeds), edits).prop_map(|(mut bytes, edits)| {
        for (at, byte, op) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ if i < bytes.len() => drop(bytes.remove(i)),
                _ => bytes.push(byte),
            }
        }
        bytes
    })
}

fn any_kind() -> impl Strategy<Value = EventKind> {
    prop::sample::select(EventKind::ALL.to_vec())
}

proptest! {
    #[test]
    fn the_contract_parser_never_panics(kind in any_kind(), bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Event::parse(kind, &bytes, &Limits::default());
    }

    #[test]
    fn an_accepted_event_reparses_to_itself(kind in any_kind(), bytes in mutated("contract")) {
        if let Ok(event) = Event::parse(kind, &bytes, &Limits::default()) {
            let again = Event::parse(kind, &event.to_json(), &Limits::default());
            prop_assert_eq!(again.map(|e| e.to_json()).ok(), Some(event.to_json()));
        }
    }

    #[test]
    fn ndjson_framing_keeps_every_non_blank_line(body in prop_oneof![mutated("ndjson"), prop::collection::vec(any::<u8>(), 0..256)]) {
        let lines = split_events(Framing::Lines, &body);
        let mut last = 0;
        for (n, line) in &lines {
            prop_assert!(*n > last, "line numbers increase");
            last = *n;
            prop_assert!(!line.contains(&b'\n') && !line.iter().all(u8::is_ascii_whitespace));
        }
        let kept: usize = lines.iter().map(|(_, l)| l.iter().filter(|b| !b.is_ascii_whitespace()).count()).sum();
        prop_assert_eq!(kept, body.iter().filter(|b| !b.is_ascii_whitespace()).count(), "no content dropped");
    }

    #[test]
    fn the_sql_guard_never_panics_and_never_lets_a_write_through(bytes in mutated("sql")) {
        let sql = String::from_utf8_lossy(&bytes);
        if check_read_only(&sql).is_ok() {
            let first = sql.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
            prop_assert!(!["DROP", "COPY", "CREATE", "INSERT", "DELETE", "UPDATE", "SET"].contains(&first.as_str()), "{}", sql);
        }
    }

    #[test]
    fn a_range_is_inside_the_file(header in "[ -~]{0,24}", total in 0u64..10_000) {
        if let Some((start, end)) = byte_range(&header, total) {
            prop_assert!(start <= end && end < total, "{header:?} of {total}: {start}-{end}");
        }
    }

    #[test]
    fn a_well_formed_range_is_served(total in 1u64..10_000, a in 0u64..10_000, len in 0u64..10_000) {
        let start = a % total;
        let end = (start + len).min(total - 1);
        prop_assert_eq!(byte_range(&format!("bytes={start}-{end}"), total), Some((start, end)));
    }
}

#[test]
fn the_corpus_writes_are_refused() {
    for (name, sql) in [("drop", "DROP TABLE chat_turns"), ("two", "SELECT 1; DROP TABLE events")] {
        assert!(check_read_only(sql).is_err(), "{name}");
    }
    assert_eq!(corpus("contract").len(), 8, "the corpus is checked in");
}
