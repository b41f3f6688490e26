//! Answers that depend only on a statement's text (the read-only verdict, the statement as an environment
//! runs it), remembered so a client repeating a statement does not pay for its analysis again.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// At most `capacity` answers; when full it starts again empty, which costs a burst of recomputation and
/// never a wrong answer (every value is a pure function of its key).
pub struct Memo<K, V> {
    answers: Mutex<HashMap<K, V>>,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    pub fn new(capacity: usize) -> Memo<K, V> {
        Memo {
            answers: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub fn get<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    pub fn put(&self, key: K, value: V) {
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        if answers.len() >= self.capacity {
            answers.clear();
        }
        answers.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::Memo;

    #[test]
    fn a_full_memo_forgets_rather_than_grows() {
        let memo = Memo::new(2);
        memo.put("a", 1);
        memo.put("b", 2);
        assert_eq!(memo.get(&"a"), Some(1));
        memo.put("c", 3);
        assert_eq!(memo.get(&"a"), None);
        assert_eq!(memo.get(&"c"), Some(3));
    }
}
