//! The blob file format reader (`storage`): a blob written by the store and
//! then damaged — one byte changed anywhere, or the file cut short — is never
//! read back as different bytes: reading fails, or returns exactly what was
//! written. A file of arbitrary bytes never panics the reader either.
//!
//! Input: two bytes of damage position (little-endian, modulo the file
//! length), one byte XORed there (0: truncate at the position instead), one
//! byte choosing the read range, then the blob's contents.
#![no_main]

use std::sync::OnceLock;

use coffer_server::storage::BlobStore;
use futures::TryStreamExt;
use libfuzzer_sys::fuzz_target;

fn store() -> &'static (BlobStore, tokio::runtime::Runtime) {
    static STORE: OnceLock<(BlobStore, tokio::runtime::Runtime)> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("coffer-fuzz-blobs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        (BlobStore::open(&dir).expect("blob store"), runtime)
    })
}

fuzz_target!(|data: &[u8]| {
    let [p0, p1, xor, range, contents @ ..] = data else {
        return;
    };
    let (store, runtime) = store();
    let mut writer = store.create().expect("create");
    writer.append(contents).expect("append");
    let info = writer.finish().expect("finish");
    let path = store.path_of(&info.id).expect("path");
    let mut file = std::fs::read(&path).expect("read back");
    let at = usize::from(u16::from_le_bytes([*p0, *p1])) % file.len();
    if *xor == 0 {
        file.truncate(at);
    } else {
        file[at] ^= xor;
    }
    std::fs::write(&path, &file).expect("damage");

    let len = contents.len() as u64;
    let start = u64::from(*range) * len / 256;
    let read = store.open_blob(&info.id).and_then(|reader| {
        let stream = reader.stream_range(start..len);
        runtime.block_on(stream.try_concat())
    });
    if let Ok(bytes) = read {
        assert_eq!(&bytes[..], &contents[start as usize..], "damaged blob read as other bytes");
    }
    store.delete(&info.id).expect("delete");

    // The same file bytes under another id: an arbitrary file is an error or
    // a blob, never a panic.
    let mut raw = store.create().expect("create");
    raw.append(b"").expect("append");
    let raw = raw.finish().expect("finish");
    let raw_path = store.path_of(&raw.id).expect("path");
    std::fs::write(&raw_path, contents).expect("write");
    if let Ok(reader) = store.open_blob(&raw.id) {
        let _ = reader.verify_all();
        let _ = runtime.block_on(reader.stream_range(0..u64::MAX).try_concat());
    }
    store.delete(&raw.id).expect("delete");
});
