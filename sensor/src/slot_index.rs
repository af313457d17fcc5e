//! The flow table's hash index: key hash -> slot number, in one open-addressed array of 8-byte
//! entries (linear probing, deletion by backward shift). Each entry holds the low 32 bits of its
//! key's hash beside the slot number, so a lookup reads one cache line of the index (the entry
//! and, nearly always, its probe neighbours) and then only the slot whose hash bits match; a
//! general hash table reads its control bytes and its bucket from two places.

/// An empty entry. A full one is `hash as u32` in the high half and `slot + 1` in the low half,
/// so it is never 0.
const EMPTY: u64 = 0;
/// The fewest entries once the index holds anything.
const MIN_ENTRIES: usize = 16;

/// Ask the CPU to start loading the cache line holding `value`, so that a read of it a little
/// later does not wait for memory: loops over many cold flows (a sweep's) issue this a few flows
/// ahead. Only a hint: it reads nothing into the program, cannot fault, and is a no-op elsewhere.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    prefetch_address((value as *const T).cast());
}

/// [`prefetch`] for every cache line `value` spans (a flow slot spans four or five).
#[inline(always)]
pub(crate) fn prefetch_all<T>(value: &T) {
    let start: *const u8 = (value as *const T).cast();
    let size = std::mem::size_of::<T>();
    let mut offset = 0;
    while offset < size {
        prefetch_address(start.wrapping_add(offset));
        offset += 64;
    }
    // The last line, when the value does not start on a line boundary.
    prefetch_address(start.wrapping_add(size.saturating_sub(1)));
}

#[inline(always)]
fn prefetch_address(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // `unsafe` only because the intrinsic is declared for CPUs with SSE, which every x86_64 has;
    // a prefetch of any address is harmless (it is never dereferenced).
    #[allow(unsafe_code)]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[derive(Default)]
pub(crate) struct SlotIndex {
    /// A power of two in length (or empty).
    entries: Vec<u64>,
    len: usize,
}

fn entry(hash: u64, slot: u32) -> u64 {
    (hash & 0xffff_ffff) << 32 | (u64::from(slot) + 1)
}

fn slot_of(entry: u64) -> u32 {
    ((entry & 0xffff_ffff) - 1) as u32
}

fn tag_of(entry: u64) -> u32 {
    (entry >> 32) as u32
}

impl SlotIndex {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.entries.len().wrapping_sub(1)
    }

    /// Where an entry whose hash has low bits `tag` would sit with nothing in the way. Positions
    /// come from the low 32 bits only, so growing needs no key hashed again (the index has at
    /// most 2^32 entries: slots are numbered by `u32`).
    fn home(&self, tag: u32) -> usize {
        tag as usize & self.mask()
    }

    /// The slot `eq` accepts among those whose key hashed to `hash`.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.entries.is_empty() {
            return None;
        }
        let tag = hash as u32;
        let mask = self.mask();
        let mut at = self.home(tag);
        loop {
            let e = self.entries[at];
            if e == EMPTY {
                return None;
            }
            if tag_of(e) == tag && eq(slot_of(e)) {
                return Some(slot_of(e));
            }
            at = (at + 1) & mask;
        }
    }

    /// Add `slot` under `hash` (the caller knows no entry for the same key is present).
    pub(crate) fn insert(&mut self, hash: u64, slot: u32) {
        // At most three quarters full: probe runs stay within a line or two.
        if (self.len + 1) * 4 > self.entries.len() * 3 {
            self.grow();
        }
        self.place(entry(hash, slot));
        self.len += 1;
    }

    fn place(&mut self, e: u64) {
        let mask = self.mask();
        let mut at = self.home(tag_of(e));
        while self.entries[at] != EMPTY {
            at = (at + 1) & mask;
        }
        self.entries[at] = e;
    }

    fn grow(&mut self) {
        let size = (self.entries.len() * 2).max(MIN_ENTRIES);
        let old = std::mem::replace(&mut self.entries, vec![EMPTY; size]);
        for e in old {
            if e != EMPTY {
                self.place(e);
            }
        }
    }

    /// Remove the entry of `slot`, filed under `hash`. False if there is none.
    pub(crate) fn remove(&mut self, hash: u64, slot: u32) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        let mask = self.mask();
        let wanted = entry(hash, slot);
        let mut hole = self.home(hash as u32);
        loop {
            let e = self.entries[hole];
            if e == EMPTY {
                return false;
            }
            if e == wanted {
                break;
            }
            hole = (hole + 1) & mask;
        }
        // Backward shift: later entries of the run that may sit in the hole move into it, so a
        // lookup never stops early at an empty entry before its own.
        let mut at = hole;
        loop {
            at = (at + 1) & mask;
            let e = self.entries[at];
            if e == EMPTY {
                break;
            }
            let home = self.home(tag_of(e));
            // `e` may move back to `hole` unless its home lies after the hole (cyclically, in
            // (hole, at]).
            if (at.wrapping_sub(home) & mask) >= (at.wrapping_sub(hole) & mask) {
                self.entries[hole] = e;
                hole = at;
            }
        }
        self.entries[hole] = EMPTY;
        self.len -= 1;
        true
    }

    /// Start loading the index line a lookup of `hash` reads first (see [`prefetch`]).
    pub(crate) fn prefetch(&self, hash: u64) {
        if let Some(e) = self.entries.get(self.home(hash as u32)) {
            prefetch(e);
        }
    }

    /// Every slot held, in index order.
    pub(crate) fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries.iter().filter(|&&e| e != EMPTY).map(|&e| slot_of(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn colliding_hashes_are_found_and_removed_in_any_order() {
        let mut index = SlotIndex::default();
        // Same low bits: one probe run.
        for slot in 0..10u32 {
            index.insert(7 | u64::from(slot) << 40, slot);
        }
        assert_eq!(index.len(), 10);
        for slot in [3u32, 0, 9, 5] {
            assert!(index.remove(7 | u64::from(slot) << 40, slot));
            assert!(!index.remove(7 | u64::from(slot) << 40, slot));
        }
        for slot in 0..10u32 {
            let found = index.find(7 | u64::from(slot) << 40, |s| s == slot);
            assert_eq!(found.is_some(), ![3, 0, 9, 5].contains(&slot), "slot {slot}");
        }
        let mut left: Vec<u32> = index.slots().collect();
        left.sort_unstable();
        assert_eq!(left, [1, 2, 4, 6, 7, 8]);
    }

    proptest! {
        /// Against a map of (slot -> hash): inserts, removals and lookups with hashes drawn from a
        /// few values, so runs collide, wrap around the end and shift back across it.
        #[test]
        fn agrees_with_a_map(ops in proptest::collection::vec((0u8..3, 0u32..40, 0u64..24), 1..400)) {
            let mut index = SlotIndex::default();
            let mut model: HashMap<u32, u64> = HashMap::new();
            for (op, slot, h) in ops {
                // Low bits from a small set (collisions), high bits vary.
                let hash = (h % 6).wrapping_mul(0x9e37_79b9) | h << 33;
                match op {
                    0 if !model.contains_key(&slot) => {
                        index.insert(hash, slot);
                        model.insert(slot, hash);
                    }
                    1 => {
                        let had = model.get(&slot).copied();
                        let removed = had.is_some_and(|h| index.remove(h, slot));
                        prop_assert_eq!(removed, had.is_some());
                        model.remove(&slot);
                    }
                    _ => {}
                }
                prop_assert_eq!(index.len(), model.len());
                for (&s, &h) in &model {
                    prop_assert_eq!(index.find(h, |x| x == s), Some(s));
                }
                // Entries keep only the hash's low 32 bits; the caller's `eq` tells keys apart.
                let found = index.find(hash, |x| x == slot);
                let filed = model.get(&slot).is_some_and(|&h| h as u32 == hash as u32);
                prop_assert_eq!(found.is_some(), filed);
            }
            let mut slots: Vec<u32> = index.slots().collect();
            slots.sort_unstable();
            let mut expected: Vec<u32> = model.keys().copied().collect();
            expected.sort_unstable();
            prop_assert_eq!(slots, expected);
        }
    }
}
