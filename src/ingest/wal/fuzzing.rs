//! Entry points for the fuzz targets in `fuzz/` (built only with `--cfg
//! fuzzing`, which cargo fuzz sets): the record decoder, and opening the log
//! on an in-memory disk holding whatever files a fuzzer made up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::faulty::FaultyFiles;
use super::files::{Files, Open};
use super::format::{decode, encode};
use super::{Wal, WalConfig, WalError};

/// Every whole record from the start, and how many bytes they span.
pub fn decode_records(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    decode(bytes)
}

/// Appends `record` framed as the log writes it.
pub fn encode_record(record: &[u8], out: &mut Vec<u8>) {
    encode(record, out)
}

/// What opening the log found, and what it did next.
#[derive(Debug)]
pub struct Recovered {
    /// Each sealed segment's number and records, oldest first.
    pub segments: Vec<(u64, Vec<Vec<u8>>)>,
    /// The number of the segment a record appended after recovery went to.
    pub appended_to: Option<u64>,
}

/// Writes `files` (name, contents), durably, into `/wal` on an in-memory
/// disk, opens the log there, appends `record` if given and seals it.
pub fn recover(files: &[(String, Vec<u8>)], record: Option<&[u8]>) -> Result<Recovered, WalError> {
    let disk = FaultyFiles::new(0);
    let dir = PathBuf::from("/wal");
    let io = |e: std::io::Error| WalError::Config(format!("laying out the disk: {e}"));
    disk.create_dir(&dir).map_err(io)?;
    for (name, contents) in files {
        let mut file = disk.open(&dir.join(name), Open::Truncate).map_err(io)?;
        file.write_all(contents).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    disk.sync_dir(&dir).map_err(io)?;
    let config = WalConfig {
        dir,
        segment_bytes: 1 << 20,
        segment_age: Duration::from_secs(3600),
        queue: 4,
        queue_bytes: 1 << 20,
        max_bytes: u64::MAX,
    };
    let wal = Wal::open_on(config, Arc::new(disk))?;
    let before: Vec<u64> = wal.sealed().iter().map(|s| s.number).collect();
    let mut segments = Vec::new();
    for segment in wal.sealed() {
        segments.push((segment.number, segment.read()?));
    }
    let mut appended_to = None;
    if let Some(record) = record {
        futures::executor::block_on(wal.append(vec![record.to_vec()]))?;
        futures::executor::block_on(wal.seal(true))?;
        appended_to = wal
            .sealed()
            .iter()
            .map(|s| s.number)
            .find(|n| !before.contains(n));
    }
    Ok(Recovered {
        segments,
        appended_to,
    })
}
