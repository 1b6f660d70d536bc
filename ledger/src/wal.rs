//! A small write-ahead log of checksummed records: the consensus driver logs every input of
//! the current height here, so a restarted validator replays to the state it had and never
//! signs a vote that conflicts with one it sent before the crash.
//!
//! Record: `u32 LE length ‖ u32 LE CRC-32 of the bytes ‖ postcard bytes`. A torn or damaged
//! tail (a crash mid-append) ends the log: it was never synced, so nothing sent depended on it,
//! and opening truncates it away.

use serde::{de::DeserializeOwned, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::Path;

/// Largest record (a proposal carries its block).
pub const MAX_RECORD: usize = 64 << 20;

/// An append-only log of `T` records.
pub struct Wal<T> {
    file: File,
    len: u64,
    _t: PhantomData<T>,
}

impl<T: Serialize + DeserializeOwned> Wal<T> {
    /// Opens (or creates) the log and returns its intact records; a damaged tail is cut off.
    pub fn open(path: &Path) -> std::io::Result<(Wal<T>, Vec<T>)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut records = Vec::new();
        let mut at = 0usize;
        while let Some((r, next)) = record::<T>(&bytes, at) {
            records.push(r);
            at = next;
        }
        if at < bytes.len() {
            tracing::warn!(
                "{}: dropping a damaged tail of {} bytes (a crash mid-append)",
                path.display(),
                bytes.len() - at
            );
            file.set_len(at as u64)?;
            file.sync_data()?;
        }
        file.seek(SeekFrom::Start(at as u64))?;
        Ok((
            Wal {
                file,
                len: at as u64,
                _t: PhantomData,
            },
            records,
        ))
    }

    /// Empties the log and writes `first` (not synced: the next [`Wal::sync`] covers it).
    pub fn reset(&mut self, first: &T) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.len = 0;
        self.append(first)
    }

    /// Appends a record (durable after the next [`Wal::sync`]).
    pub fn append(&mut self, r: &T) -> std::io::Result<()> {
        let body = postcard::to_allocvec(r)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if body.len() > MAX_RECORD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("a WAL record of {} bytes (limit {MAX_RECORD})", body.len()),
            ));
        }
        let mut frame = Vec::with_capacity(8 + body.len());
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        frame.extend_from_slice(&body);
        self.file.write_all(&frame)?;
        self.len += frame.len() as u64;
        Ok(())
    }

    /// Makes every appended record durable.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Bytes in the log.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The record at `at` and the offset after it, if intact.
fn record<T: DeserializeOwned>(b: &[u8], at: usize) -> Option<(T, usize)> {
    let head = b.get(at..at + 8)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let body = b.get(at + 8..at + 8 + len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let r = postcard::from_bytes(body).ok()?;
    Some((r, at + 8 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_a_torn_tail_is_cut() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("w.wal");
        {
            let (mut w, r) = Wal::<(u64, Vec<u8>)>::open(&p).expect("open");
            assert!(r.is_empty());
            w.reset(&(1, vec![1; 10])).expect("reset");
            w.append(&(2, vec![2; 1000])).expect("append");
            w.sync().expect("sync");
        }
        // A crash mid-append: half a record at the end.
        let full = std::fs::read(&p).expect("read");
        let mut torn = full.clone();
        torn.extend_from_slice(&[50, 0, 0, 0, 1, 2, 3, 4, 9, 9]);
        std::fs::write(&p, &torn).expect("write");
        let (mut w, r) = Wal::<(u64, Vec<u8>)>::open(&p).expect("reopen");
        assert_eq!(r, vec![(1, vec![1; 10]), (2, vec![2; 1000])]);
        assert_eq!(std::fs::read(&p).expect("read").len(), full.len());
        // A flipped bit in the last record ends the log there.
        w.append(&(3, vec![3])).expect("append");
        w.sync().expect("sync");
        drop(w);
        let mut b = std::fs::read(&p).expect("read");
        let last = b.len() - 1;
        b[last] ^= 1;
        std::fs::write(&p, &b).expect("write");
        let (w, r) = Wal::<(u64, Vec<u8>)>::open(&p).expect("reopen");
        assert_eq!(r.len(), 2);
        assert_eq!(w.len(), full.len() as u64);
        // Reset keeps only the new first record.
        let mut w = w;
        w.reset(&(9, vec![])).expect("reset");
        drop(w);
        let (_, r) = Wal::<(u64, Vec<u8>)>::open(&p).expect("reopen");
        assert_eq!(r, vec![(9, vec![])]);
    }
}
