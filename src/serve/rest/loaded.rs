//! The answers to load-table, kept per table with the metadata file they were read from: a metadata file never
//! changes once written, so while the catalog still names it the answer is the same, and a load costs one
//! catalog query instead of two and a read of the file.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use iceberg::TableIdent;

/// Tables whose answers are kept at most; past it the cache starts again empty.
const TABLES_KEPT: usize = 4096;

/// One table's answer: the metadata file it describes and the JSON body sent for it.
struct Answer {
    metadata_location: String,
    body: Bytes,
}

#[derive(Default)]
pub struct LoadedTables(Mutex<HashMap<TableIdent, Answer>>);

impl LoadedTables {
    /// The body kept for `table`, if it was made from `metadata_location`.
    pub fn get(&self, table: &TableIdent, metadata_location: &str) -> Option<Bytes> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.get(table)
            .filter(|answer| answer.metadata_location == metadata_location)
            .map(|answer| answer.body.clone())
    }

    pub fn put(&self, table: TableIdent, metadata_location: String, body: Bytes) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= TABLES_KEPT && !kept.contains_key(&table) {
            kept.clear();
        }
        kept.insert(
            table,
            Answer {
                metadata_location,
                body,
            },
        );
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
}
