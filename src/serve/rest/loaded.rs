//! The answers to load-table, kept per table with the metadata file they were read from: a metadata file never
//! changes once written, so while the catalog still names it the answer is the same, and a load costs one
//! catalog query instead of two and a read of the file.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use iceberg::TableIdent;

/// Bytes of answers kept at most (a table with a long history has a large metadata file); past it the cache
/// starts again empty. An answer larger than a sixteenth of it is not kept.
const BYTES_KEPT: usize = 64 << 20;

/// One table's answer: the metadata file it describes and the JSON body sent for it.
struct Answer {
    metadata_location: String,
    body: Bytes,
}

#[derive(Default)]
pub struct LoadedTables(Mutex<Kept>);

#[derive(Default)]
struct Kept {
    answers: HashMap<TableIdent, Answer>,
    bytes: usize,
}

impl LoadedTables {
    /// The body kept for `table`, if it was made from `metadata_location`.
    pub fn get(&self, table: &TableIdent, metadata_location: &str) -> Option<Bytes> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.answers
            .get(table)
            .filter(|answer| answer.metadata_location == metadata_location)
            .map(|answer| answer.body.clone())
    }

    pub fn put(&self, table: TableIdent, metadata_location: String, body: Bytes) {
        if body.len() > BYTES_KEPT / 16 {
            return;
        }
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if kept.bytes + body.len() > BYTES_KEPT {
            *kept = Kept::default();
        }
        kept.bytes += body.len();
        let replaced = kept.answers.insert(
            table,
            Answer {
                metadata_location,
                body,
            },
        );
        if let Some(replaced) = replaced {
            kept.bytes -= replaced.body.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_kept_only_for_the_metadata_file_it_was_made_from() {
        let loaded = LoadedTables::default();
        let table = crate::storage::iceberg::catalog::ident("shop", "events");
        loaded.put(table.clone(), "m1.json".into(), Bytes::from_static(b"one"));
        assert_eq!(loaded.get(&table, "m1.json").as_deref(), Some(&b"one"[..]));
        assert_eq!(loaded.get(&table, "m2.json"), None);
        loaded.put(table.clone(), "m2.json".into(), Bytes::from_static(b"two"));
        assert_eq!(loaded.get(&table, "m1.json"), None);
    }

    #[test]
    fn answers_are_kept_within_a_byte_budget() {
        let loaded = LoadedTables::default();
        let big = Bytes::from(vec![b' '; BYTES_KEPT / 16]);
        for i in 0..40 {
            let table = crate::storage::iceberg::catalog::ident("shop", &format!("t{i}"));
            loaded.put(table, format!("m{i}.json"), big.clone());
            assert!(loaded.0.lock().unwrap().bytes <= BYTES_KEPT);
        }
        let huge = Bytes::from(vec![b' '; BYTES_KEPT / 16 + 1]);
        let table = crate::storage::iceberg::catalog::ident("shop", "huge");
        loaded.put(table.clone(), "h.json".into(), huge);
        assert_eq!(loaded.get(&table, "h.json"), None);
    }
}
