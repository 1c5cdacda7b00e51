//! The blob store: immutable files of object bytes under `<data-dir>/blobs`, each
//! ending in a trailer of CRC32C checksums, one per 1 MiB block. A blob is written
//! to `<data-dir>/tmp`, fsync'd, renamed into place and its directory fsync'd
//! before any metadata refers to it; every read verifies the blocks it touches.
//! It knows nothing of buckets or keys.

mod gc;
pub mod shard_files;

pub use self::gc::{collect_garbage, spawn_collector};

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;

/// Size of a checksummed block: the unit of verification on reads.
pub const BLOCK_SIZE: usize = 1 << 20;
const MAGIC: &[u8; 8] = b"COFFBLB1";
/// data_len (u64) + block_size (u32) + block count (u32) + magic.
const TAIL_LEN: u64 = 8 + 4 + 4 + 8;

#[derive(Debug, Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    blobs: PathBuf,
    tmp: PathBuf,
    /// `<data-dir>/volume.lock`, locked for as long as this store lives: one
    /// process per volume, so what it finds in `tmp` at start is debris.
    _lock: File,
}

/// A blob that is durable on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub id: String,
    pub size: u64,
    /// Nodes holding a durable copy (filled in by the replicated data plane).
    pub replicas: Vec<String>,
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Takes the volume's lock (released by the kernel when the process dies, even
/// by `kill -9`), or says who has it.
fn lock_volume(data_dir: &Path) -> io::Result<File> {
    let path = data_dir.join("volume.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!(
                "{} is locked: another coffer-server is using this data directory",
                path.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// The file system holding a volume: its size, and the bytes this process may
/// still write there (what `df` shows as available, not counting root's reserve).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeSpace {
    pub size: u64,
    pub available: u64,
}

/// `statvfs(3)` of `path`.
#[allow(clippy::unnecessary_cast)] // the field types differ between platforms
fn volume_space(path: &Path) -> io::Result<VolumeSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is NUL-terminated and outlives the call; `stat` is a
    // place of the type statvfs(3) fills when it returns 0.
    if unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialized `stat`.
    let stat = unsafe { stat.assume_init() };
    let unit = stat.f_frsize as u64;
    Ok(VolumeSpace {
        size: (stat.f_blocks as u64).saturating_mul(unit),
        available: (stat.f_bavail as u64).saturating_mul(unit),
    })
}

fn corrupt(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl BlobStore {
    /// Opens (creating when needed) the blob directories under `data_dir`, for
    /// this process alone: a second process on the same volume is refused. The
    /// temp files of writes a crashed process left behind are removed.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let blobs = data_dir.join("blobs");
        let tmp = data_dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        let lock = lock_volume(data_dir)?;
        // No writer of ours exists yet, and no other process holds the lock.
        for entry in std::fs::read_dir(&tmp)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
            }
        }
        for shard in 0..=255u8 {
            std::fs::create_dir_all(blobs.join(format!("{shard:02x}")))?;
        }
        sync_dir(&blobs)?;
        sync_dir(data_dir)?;
        Ok(Self {
            inner: Arc::new(Inner {
                blobs,
                tmp,
                _lock: lock,
            }),
        })
    }

    /// The size and free space of the file system this volume is on.
    pub fn space(&self) -> io::Result<VolumeSpace> {
        volume_space(&self.inner.blobs)
    }

    /// A fresh random blob id (128 bits, hex).
    pub fn new_blob_id() -> String {
        format!("{:032x}", rand::random::<u128>())
    }

    /// Where blob `id` lives on this volume (tests and fuzzing damage it there).
    pub fn path_of(&self, id: &str) -> io::Result<PathBuf> {
        let valid = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
        // A shard file of an erasure-coded blob sits beside the blob files,
        // spread over the same directories by its random part.
        let dir = match shard_files::parse_shard_file(id) {
            Some((blob, _)) => shard_files::parse_erasure_id(blob).map(|(_, hex)| &hex[..2]),
            None => valid.then(|| &id[..2]),
        };
        let Some(dir) = dir else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad blob id {id:?}"),
            ));
        };
        Ok(self.inner.blobs.join(dir).join(id))
    }

    /// Removes every shard file of erasure-coded blob `id` this volume holds.
    pub fn delete_shards(&self, id: &str) -> io::Result<()> {
        let Some((geometry, _)) = shard_files::parse_erasure_id(id) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad erasure-coded blob id {id:?}"),
            ));
        };
        (0..geometry.shards()).try_for_each(|i| self.delete(&shard_files::shard_file(id, i)))
    }

    /// The index of the shard of erasure-coded blob `id` this volume holds.
    pub fn shard_held(&self, id: &str) -> Option<usize> {
        let (geometry, _) = shard_files::parse_erasure_id(id)?;
        (0..geometry.shards()).find(|i| self.contains(&shard_files::shard_file(id, *i)))
    }

    /// Starts writing a new blob into a temp file. Blocking: call from a blocking context.
    pub fn create(&self) -> io::Result<BlobWriter> {
        self.create_with_id(&Self::new_blob_id())
    }

    /// Starts writing the local copy of blob `id` (a replica made elsewhere). Blocking.
    pub fn create_with_id(&self, id: &str) -> io::Result<BlobWriter> {
        self.path_of(id)?;
        let id = id.to_owned();
        // Unique per writer: two attempts at one blob never share a temp file.
        let tmp_path = self
            .inner
            .tmp
            .join(format!("{id}.{:08x}.tmp", rand::random::<u32>()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)?;
        Ok(BlobWriter {
            store: self.clone(),
            id,
            tmp_path,
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
            len: 0,
            block_crc: 0,
            block_fill: 0,
            crcs: Vec::new(),
        })
    }

    /// Opens a blob for reading and checks its trailer. Blocking.
    pub fn open_blob(&self, id: &str) -> io::Result<BlobReader> {
        let mut file = File::open(self.path_of(id)?)?;
        let total = file.metadata()?.len();
        if total < TAIL_LEN {
            return Err(corrupt(format!("blob {id} is truncated")));
        }
        file.seek(SeekFrom::Start(total - TAIL_LEN))?;
        let mut tail = [0u8; TAIL_LEN as usize];
        file.read_exact(&mut tail)?;
        let len = u64::from_le_bytes(tail[0..8].try_into().map_err(|_| corrupt("tail"))?);
        let block_size =
            u32::from_le_bytes(tail[8..12].try_into().map_err(|_| corrupt("tail"))?) as usize;
        let blocks =
            u32::from_le_bytes(tail[12..16].try_into().map_err(|_| corrupt("tail"))?) as usize;
        if &tail[16..24] != MAGIC || block_size == 0 {
            return Err(corrupt(format!("blob {id} has no valid trailer")));
        }
        let expected_blocks = len.div_ceil(block_size as u64) as usize;
        let expected_total = len
            .checked_add(4 * blocks as u64)
            .and_then(|n| n.checked_add(TAIL_LEN));
        if blocks != expected_blocks || expected_total != Some(total) {
            return Err(corrupt(format!("blob {id} has an inconsistent trailer")));
        }
        let mut raw = vec![0u8; 4 * blocks];
        file.seek(SeekFrom::Start(len))?;
        file.read_exact(&mut raw)?;
        let crcs = raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(BlobReader {
            id: id.to_owned(),
            file: Arc::new(file),
            len,
            block_size,
            crcs: Arc::new(crcs),
        })
    }

    /// Removes a blob; a blob already gone is not an error.
    pub fn delete(&self, id: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path_of(id)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Whether this store holds a file for blob `id`.
    pub fn contains(&self, id: &str) -> bool {
        self.path_of(id).is_ok_and(|p| p.exists())
    }

    /// Moves a blob's file out of the store (to keep a bad copy for inspection).
    pub fn move_out(&self, id: &str, to: &Path) -> io::Result<()> {
        match std::fs::rename(self.path_of(id)?, to) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every blob file: (id, data size). Blocking; walks all shards.
    pub fn list(&self) -> io::Result<Vec<(String, u64)>> {
        let mut blobs = Vec::new();
        for shard in std::fs::read_dir(&self.inner.blobs)? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(shard.path())? {
                let entry = entry?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if self.path_of(&name).is_ok() {
                    let len = entry.metadata()?.len();
                    blobs.push((name, data_len_of(len)));
                }
            }
        }
        blobs.sort();
        Ok(blobs)
    }

    pub(crate) fn blobs_dir(&self) -> &Path {
        &self.inner.blobs
    }

    pub(crate) fn tmp_dir(&self) -> &Path {
        &self.inner.tmp
    }
}

/// Writes one blob. Dropping it without `finish` removes the temp file.
pub struct BlobWriter {
    store: BlobStore,
    id: String,
    tmp_path: PathBuf,
    file: Option<BufWriter<File>>,
    len: u64,
    block_crc: u32,
    block_fill: usize,
    crcs: Vec<u32>,
}

impl BlobWriter {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends bytes. Blocking.
    pub fn append(&mut self, mut data: &[u8]) -> io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer finished"))?;
        file.write_all(data)?;
        self.len += data.len() as u64;
        while !data.is_empty() {
            let take = (BLOCK_SIZE - self.block_fill).min(data.len());
            self.block_crc = crc32c_append(self.block_crc, &data[..take]);
            self.block_fill += take;
            data = &data[take..];
            if self.block_fill == BLOCK_SIZE {
                self.crcs.push(self.block_crc);
                self.block_crc = 0;
                self.block_fill = 0;
            }
        }
        Ok(())
    }

    /// Like [`finish`](Self::finish), but only if the blocks written have exactly
    /// the checksums `expected` (another copy's trailer): an end-to-end check of a
    /// copy made over the network. On mismatch nothing is kept.
    pub fn finish_matching(mut self, expected: &[u32]) -> io::Result<BlobInfo> {
        self.close_block();
        if self.crcs != expected {
            return Err(corrupt(format!(
                "copy of blob {} does not match its source's checksums",
                self.id
            )));
        }
        self.finish()
    }

    fn close_block(&mut self) {
        if self.block_fill > 0 {
            self.crcs.push(self.block_crc);
            self.block_crc = 0;
            self.block_fill = 0;
        }
    }

    /// Writes the trailer, fsyncs, and moves the blob into place. Blocking.
    pub fn finish(mut self) -> io::Result<BlobInfo> {
        self.close_block();
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("blob writer finished"))?;
        for crc in &self.crcs {
            file.write_all(&crc.to_le_bytes())?;
        }
        file.write_all(&self.len.to_le_bytes())?;
        file.write_all(&(BLOCK_SIZE as u32).to_le_bytes())?;
        file.write_all(&(self.crcs.len() as u32).to_le_bytes())?;
        file.write_all(MAGIC)?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        let final_path = self.store.path_of(&self.id)?;
        std::fs::rename(&self.tmp_path, &final_path)?;
        if let Some(dir) = final_path.parent() {
            sync_dir(dir)?;
        }
        // Renamed: nothing left for Drop to clean up.
        self.tmp_path = PathBuf::new();
        Ok(BlobInfo {
            id: std::mem::take(&mut self.id),
            size: self.len,
            replicas: Vec::new(),
        })
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.tmp_path.as_os_str().is_empty() {
            self.file.take();
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

/// The data size of a blob file of `file_len` bytes (without its trailer).
fn data_len_of(file_len: u64) -> u64 {
    // file = data + 4 bytes per block + tail; solve for data.
    let body = file_len.saturating_sub(TAIL_LEN);
    let per_block = BLOCK_SIZE as u64 + 4;
    let full = body / per_block;
    let rest = body % per_block;
    full * BLOCK_SIZE as u64 + rest.saturating_sub(4)
}

/// CRC32C of `data`, continuing from `crc` (0 to start).
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    // crc-fast's CRC-32/ISCSI is CRC32C; combine by continuing from the state.
    let mut digest = crc_fast::Digest::new_with_init_state(
        crc_fast::CrcAlgorithm::Crc32Iscsi,
        u64::from(crc ^ 0xFFFF_FFFF),
    );
    digest.update(data);
    digest.finalize() as u32
}

/// An open blob whose trailer has been read; reads verify each block.
#[derive(Debug, Clone)]
pub struct BlobReader {
    id: String,
    file: Arc<File>,
    len: u64,
    block_size: usize,
    crcs: Arc<Vec<u32>>,
}

impl BlobReader {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads block `index` and checks it against its stored CRC32C. Blocking.
    fn read_block(&self, index: usize) -> io::Result<Bytes> {
        let start = index as u64 * self.block_size as u64;
        let size = (self.len - start).min(self.block_size as u64) as usize;
        let mut buf = vec![0u8; size];
        self.file.read_exact_at(&mut buf, start)?;
        let expected = self
            .crcs
            .get(index)
            .copied()
            .ok_or_else(|| corrupt("block index"))?;
        if crc32c_append(0, &buf) != expected {
            return Err(corrupt(format!(
                "blob {} block {index} fails its checksum",
                self.id
            )));
        }
        Ok(Bytes::from(buf))
    }

    /// Streams bytes `range` (end exclusive), verifying every block touched.
    /// At most one block is held in memory at a time.
    pub fn stream_range(
        self,
        range: std::ops::Range<u64>,
    ) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        let end = range.end.min(self.len);
        let state = (self, range.start);
        futures::stream::try_unfold(state, move |(reader, pos)| async move {
            if pos >= end {
                return Ok(None);
            }
            let block_size = reader.block_size as u64;
            let index = (pos / block_size) as usize;
            let block_start = index as u64 * block_size;
            let r = reader.clone();
            let block = tokio::task::spawn_blocking(move || r.read_block(index))
                .await
                .map_err(io::Error::other)??;
            let from = (pos - block_start) as usize;
            let to = ((end - block_start) as usize).min(block.len());
            let chunk = block.slice(from..to);
            let next = block_start + to as u64;
            Ok(Some((chunk, (reader, next))))
        })
    }

    /// The stored CRC32C of each block.
    pub fn block_crcs(&self) -> &[u32] {
        &self.crcs
    }

    /// Reads and verifies every block (the scrubber's check). Blocking.
    pub fn verify_all(&self) -> io::Result<()> {
        for index in 0..self.crcs.len() {
            self.read_block(index)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    fn store() -> (BlobStore, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("coffer-blob-test-{:016x}", rand::random::<u64>()));
        (BlobStore::open(&dir).unwrap(), dir)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// A trailer whose sizes add up past `u64::MAX` is corruption, not a
    /// panic (an overflow in debug builds, a wrapped check in release).
    #[test]
    fn a_trailer_with_impossible_sizes_is_corrupt() {
        let (store, dir) = store();
        let mut w = store.create().unwrap();
        w.append(b"x").unwrap();
        let info = w.finish().unwrap();
        let max = u64::from(u32::MAX);
        let mut tail = Vec::new();
        tail.extend((max * max).to_le_bytes());
        tail.extend(u32::MAX.to_le_bytes());
        tail.extend(u32::MAX.to_le_bytes());
        tail.extend(MAGIC);
        std::fs::write(store.path_of(&info.id).unwrap(), &tail).unwrap();
        let err = store.open_blob(&info.id).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn ranged_reads_across_blocks_return_exact_bytes() {
        let (store, dir) = store();
        let data = pattern(BLOCK_SIZE * 2 + 12345);
        let mut w = store.create().unwrap();
        w.append(&data[..100]).unwrap();
        w.append(&data[100..]).unwrap();
        let info = w.finish().unwrap();
        assert_eq!(info.size, data.len() as u64);
        for (a, b) in [
            (0, data.len()),
            (5, 7),
            (BLOCK_SIZE - 3, BLOCK_SIZE + 3),
            (data.len() - 1, data.len()),
        ] {
            let reader = store.open_blob(&info.id).unwrap();
            let chunks: Vec<Bytes> = reader
                .stream_range(a as u64..b as u64)
                .try_collect()
                .await
                .unwrap();
            assert_eq!(chunks.concat(), &data[a..b]);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_flipped_byte_is_detected_and_never_served() {
        let (store, dir) = store();
        let data = pattern(BLOCK_SIZE + 10);
        let mut w = store.create().unwrap();
        w.append(&data).unwrap();
        let info = w.finish().unwrap();
        let path = store.path_of(&info.id).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[BLOCK_SIZE + 2] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        let reader = store.open_blob(&info.id).unwrap();
        // The first block is intact and still readable; the second is refused.
        let first: Vec<Bytes> = reader
            .clone()
            .stream_range(0..10)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(first.concat(), &data[..10]);
        let err = reader
            .clone()
            .stream_range(0..data.len() as u64)
            .try_collect::<Vec<Bytes>>()
            .await;
        assert_eq!(err.unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert!(reader.verify_all().is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn listing_reports_every_blob_with_its_data_size() {
        let (store, dir) = store();
        let mut expected = Vec::new();
        for size in [
            0,
            1,
            BLOCK_SIZE - 1,
            BLOCK_SIZE,
            BLOCK_SIZE + 1,
            3 * BLOCK_SIZE + 7,
        ] {
            let mut w = store.create().unwrap();
            w.append(&pattern(size)).unwrap();
            let info = w.finish().unwrap();
            assert!(store.contains(&info.id));
            expected.push((info.id, size as u64));
        }
        expected.sort();
        assert_eq!(store.list().unwrap(), expected);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_copy_is_kept_only_when_it_matches_its_source_checksums() {
        let (store, dir) = store();
        let data = pattern(BLOCK_SIZE + 100);
        let mut w = store.create().unwrap();
        w.append(&data).unwrap();
        let source = w.finish().unwrap();
        let expected = store.open_blob(&source.id).unwrap().block_crcs().to_vec();
        assert_eq!(expected.len(), 2);
        let (other, other_dir) = self::tests::store();
        let mut good = other.create_with_id(&source.id).unwrap();
        good.append(&data[..10]).unwrap();
        good.append(&data[10..]).unwrap();
        good.finish_matching(&expected).unwrap();
        assert!(other.contains(&source.id));
        let mut damaged = data.clone();
        damaged[BLOCK_SIZE + 5] ^= 1;
        let mut bad = other.create().unwrap();
        bad.append(&damaged).unwrap();
        let id = bad.id().to_owned();
        assert_eq!(
            bad.finish_matching(&expected).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert!(!other.contains(&id));
        assert_eq!(std::fs::read_dir(other.tmp_dir()).unwrap().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::remove_dir_all(other_dir).unwrap();
    }

    #[test]
    fn a_volume_serves_one_process_and_starts_without_debris() {
        let (store, dir) = store();
        let err = BlobStore::open(&dir).expect_err("a second store on the volume");
        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
        // What a process killed in the middle of a write leaves behind.
        std::fs::write(store.tmp_dir().join("0123.deadbeef.tmp"), b"half a write").unwrap();
        drop(store);
        assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 1);
        let reopened = BlobStore::open(&dir).unwrap();
        assert_eq!(std::fs::read_dir(reopened.tmp_dir()).unwrap().count(), 0);
        drop(reopened);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dropped_writer_leaves_no_temp_file() {
        let (store, dir) = store();
        let mut w = store.create().unwrap();
        w.append(b"partial").unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c_append(0, b"123456789"), 0xE306_9283);
        let split = crc32c_append(crc32c_append(0, b"1234"), b"56789");
        assert_eq!(split, 0xE306_9283);
    }
}
