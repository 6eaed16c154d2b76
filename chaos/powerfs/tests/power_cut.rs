//! Real mounts in temporary directories. These tests need FUSE (`/dev/fuse`, and root or
//! `fusermount3`); without it they fail, saying so.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use licensed_powerfs::{CutMode, CutReport, PowerFs, PowerFsError};

/// A mount over a backing directory, both in a temporary directory. The mount is dropped
/// (unmounted) before the directory is removed.
struct Fixture {
    fs: PowerFs,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temporary directory");
        let fs = PowerFs::mount(&dir.path().join("backing"), &dir.path().join("mnt"))
            .unwrap_or_else(|e| {
                panic!(
                    "mounting powerfs failed; these tests need FUSE (/dev/fuse, and root or \
                     fusermount3): {e}"
                )
            });
        Fixture { fs, _dir: dir }
    }

    /// A path on the mount.
    fn at(&self, name: &str) -> PathBuf {
        self.fs.mountpoint().join(name)
    }

    fn cut(&mut self, mode: CutMode) -> CutReport {
        self.fs.power_cut(mode).expect("power cut")
    }
}

/// Deterministic bytes, different for each `seed`.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The contents of `path`, read through a fresh descriptor.
fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn write_synced(path: &Path, data: &[u8]) {
    let mut f = File::create(path).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

fn append(path: &Path, data: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(data).unwrap();
}

#[test]
fn synced_data_survives_a_clean_cut_and_unsynced_appends_are_lost() {
    let mut fx = Fixture::new();
    let path = fx.at("000001.log");
    let synced = bytes(1, 10_000);
    write_synced(&path, &synced);
    append(&path, &bytes(2, 5_000));
    assert_eq!(fs::metadata(&path).unwrap().len(), 15_000);

    let report = fx.cut(CutMode::Clean);
    assert_eq!(
        report,
        CutReport {
            files: 1,
            bytes_dropped: 5_000,
            files_truncated: 1
        }
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), 10_000);
    assert_eq!(read(&path), synced);
    // The backing file itself was restored.
    assert_eq!(read(&fx.fs.backing().join("000001.log")), synced);
}

#[test]
fn an_unsynced_overwrite_of_synced_bytes_is_undone() {
    let mut fx = Fixture::new();
    let path = fx.at("MANIFEST-000001");
    let synced = bytes(3, 3 * 4096 + 17);
    write_synced(&path, &synced);
    {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        f.write_all_at(&[b'x'; 1000], 100).unwrap();
        f.write_all_at(&[b'y'; 3000], 50).unwrap();
        f.write_all_at(&[b'z'; 200], 12_000).unwrap(); // overwrites the end and appends
        let mut seen = vec![0; 20];
        f.read_exact_at(&mut seen, 90).unwrap();
        assert_eq!(&seen[10..], &[b'y'; 10]);
    }
    assert_ne!(read(&path), synced);
    let report = fx.cut(CutMode::Clean);
    assert_eq!(report.files, 1);
    assert_eq!(report.bytes_dropped, 4200);
    assert_eq!(read(&path), synced);
}

#[test]
fn fdatasync_is_durable_unsynced_new_files_come_back_empty_and_renames_keep_synced_data() {
    let mut fx = Fixture::new();
    // fdatasync counts.
    let a = fx.at("a");
    {
        let mut f = File::create(&a).unwrap();
        f.write_all(&bytes(4, 7000)).unwrap();
        f.sync_data().unwrap();
        f.write_all(&bytes(5, 3000)).unwrap();
    }
    // Created and written, never synced.
    let b = fx.at("b");
    fs::write(&b, bytes(6, 9000)).unwrap();
    // Synced, then renamed; then more unsynced data under the new name.
    let c = fx.at("c.tmp");
    let c_data = bytes(7, 5000);
    write_synced(&c, &c_data);
    let d = fx.at("d");
    fs::rename(&c, &d).unwrap();
    append(&d, b"lost");
    // RocksDB's CURRENT: a synced temporary file renamed over the old one.
    write_synced(&fx.at("CURRENT"), b"MANIFEST-000001\n");
    write_synced(&fx.at("000002.dbtmp"), b"MANIFEST-000002\n");
    fs::rename(fx.at("000002.dbtmp"), fx.at("CURRENT")).unwrap();

    let report = fx.cut(CutMode::Clean);
    assert_eq!(report.files, 3);
    assert_eq!(report.bytes_dropped, 3000 + 9000 + 4);

    assert_eq!(read(&a), bytes(4, 7000));
    assert!(b.exists(), "metadata is durable: the file exists");
    assert_eq!(fs::metadata(&b).unwrap().len(), 0);
    assert!(!c.exists());
    assert_eq!(read(&d), c_data);
    assert_eq!(read(&fx.at("CURRENT")), b"MANIFEST-000002\n");
    assert!(!fx.at("000002.dbtmp").exists());
}

#[test]
fn a_torn_cut_keeps_a_page_aligned_prefix_of_the_unsynced_writes() {
    let mut fx = Fixture::new();
    let mut lengths = HashSet::new();
    for seed in 0..24u64 {
        let path = fx.at(&format!("wal-{seed}"));
        let synced = bytes(100 + seed, 1000 + seed as usize * 13);
        write_synced(&path, &synced);
        let mut expected = synced.clone();
        {
            let mut f = OpenOptions::new().append(true).open(&path).unwrap();
            for i in 0..40 {
                let chunk = bytes(seed * 1000 + i, 300 + (i as usize * 37) % 900);
                f.write_all(&chunk).unwrap();
                expected.extend_from_slice(&chunk);
            }
        }
        let report = fx.cut(CutMode::Torn { seed });
        let got = read(&path);
        let len = got.len();
        assert!(len >= synced.len(), "seed {seed}: synced data lost");
        assert!(
            len == synced.len() || len % 4096 == 0,
            "seed {seed}: the surviving prefix ends at {len}, not at a page boundary"
        );
        assert_eq!(
            got[..],
            expected[..len],
            "seed {seed}: not a prefix of the writes"
        );
        assert_eq!(report.bytes_dropped, (expected.len() - len) as u64);
        lengths.insert(len - synced.len());
    }
    assert!(
        lengths.len() > 2,
        "different seeds should keep different amounts: {lengths:?}"
    );
    // The same seed gives the same outcome.
    let mut outcomes = Vec::new();
    for round in 0..2 {
        let path = fx.at(&format!("again-{round}"));
        write_synced(&path, b"");
        append(&path, &bytes(9, 50_000));
        fx.cut(CutMode::Torn { seed: 77 });
        outcomes.push(fs::metadata(&path).unwrap().len());
    }
    assert_eq!(outcomes[0], outcomes[1]);
}

#[test]
fn unsynced_truncation_is_undone() {
    let mut fx = Fixture::new();
    let synced = bytes(10, 10_000);
    // ftruncate down.
    let p1 = fx.at("ftruncate");
    write_synced(&p1, &synced);
    OpenOptions::new()
        .write(true)
        .open(&p1)
        .unwrap()
        .set_len(100)
        .unwrap();
    // O_TRUNC on open, then new data.
    let p2 = fx.at("o_trunc");
    write_synced(&p2, &synced);
    fs::write(&p2, b"new and unsynced").unwrap();
    // truncate(2) by path, up.
    let p3 = fx.at("grow");
    write_synced(&p3, &synced);
    let c = std::ffi::CString::new(p3.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a valid C string.
    assert_eq!(unsafe { libc::truncate(c.as_ptr(), 50_000) }, 0);
    // Down, then written past the old end.
    let p4 = fx.at("shrink-then-write");
    write_synced(&p4, &synced);
    {
        let f = OpenOptions::new().write(true).open(&p4).unwrap();
        f.set_len(10).unwrap();
        f.write_all_at(b"past the old end", 20_000).unwrap();
    }
    assert_eq!(fs::metadata(&p1).unwrap().len(), 100);
    assert_eq!(read(&p2), b"new and unsynced");
    assert_eq!(fs::metadata(&p3).unwrap().len(), 50_000);

    let report = fx.cut(CutMode::Clean);
    assert_eq!(report.files, 4);
    for p in [&p1, &p2, &p3, &p4] {
        assert_eq!(read(p), synced, "{}", p.display());
    }
}

#[test]
fn readers_after_a_cut_see_the_post_cut_contents() {
    let mut fx = Fixture::new();
    let path = fx.at("sst");
    let synced = bytes(11, 6000);
    write_synced(&path, &synced);
    {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        f.write_all_at(&[0xAB; 500], 0).unwrap();
        f.seek(SeekFrom::End(0)).unwrap();
        f.write_all(&bytes(12, 20_000)).unwrap();
        // Read everything through the mount before the cut, so a cache would hold it.
        let mut all = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 26_000);
    }
    assert_eq!(read(&path)[..500], [0xAB; 500]);
    assert_eq!(fs::metadata(&path).unwrap().len(), 26_000);

    fx.cut(CutMode::Clean);

    assert_eq!(fs::metadata(&path).unwrap().len(), 6000);
    assert_eq!(read(&path), synced);
    // Another process sees the same.
    let out = Command::new("stat")
        .args(["-c", "%s"])
        .arg(&path)
        .output()
        .expect("run stat");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "6000");
    let out = Command::new("md5sum")
        .arg(&path)
        .output()
        .expect("run md5sum");
    let out_backing = Command::new("md5sum")
        .arg(fx.fs.backing().join("sst"))
        .output()
        .expect("run md5sum");
    let sum = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(sum(&out), sum(&out_backing));
    // Writing after the cut works from the post-cut state.
    append(&path, b"after");
    let mut expected = synced.clone();
    expected.extend_from_slice(b"after");
    assert_eq!(read(&path), expected);
}

/// The per-file model of the stress test: current contents and contents at the last sync.
#[derive(Default, Clone)]
struct Model {
    now: Vec<u8>,
    synced: Vec<u8>,
}

fn stress_worker(dir: &Path, names: &[String], seed: u64, ops: usize) -> Vec<Model> {
    let mut files: Vec<File> = names
        .iter()
        .map(|n| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(dir.join(n))
                .unwrap()
        })
        .collect();
    let mut models: Vec<Model> = files
        .iter()
        .map(|f| {
            let mut m = Model::default();
            let mut data = Vec::new();
            (&*f).read_to_end(&mut data).unwrap();
            m.now = data.clone();
            m.synced = data;
            m
        })
        .collect();
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for op in 0..ops {
        let i = (next() % files.len() as u64) as usize;
        let (f, m) = (&mut files[i], &mut models[i]);
        match next() % 20 {
            0 => {
                f.sync_data().unwrap();
                m.synced = m.now.clone();
            }
            1 => {
                f.sync_all().unwrap();
                m.synced = m.now.clone();
            }
            2 if !m.now.is_empty() => {
                // An overwrite inside the file.
                let off = (next() % m.now.len() as u64) as usize;
                let data = bytes(next(), 1 + (next() % 3000) as usize);
                f.write_all_at(&data, off as u64).unwrap();
                let end = off + data.len();
                if m.now.len() < end {
                    m.now.resize(end, 0);
                }
                m.now[off..end].copy_from_slice(&data);
            }
            _ => {
                let len = if next() % 4 == 0 {
                    1 + (next() % 20_000) as usize
                } else {
                    1 + (next() % 200) as usize
                };
                let data = bytes(seed ^ op as u64, len);
                f.write_all_at(&data, m.now.len() as u64).unwrap();
                m.now.extend_from_slice(&data);
            }
        }
    }
    models
}

#[test]
fn stress_every_file_is_its_last_synced_content_after_a_cut() {
    let mut fx = Fixture::new();
    let mnt = fx.fs.mountpoint().to_path_buf();
    let groups: Vec<Vec<String>> = (0..2)
        .map(|t| (0..3).map(|i| format!("f{t}-{i}")).collect())
        .collect();
    for round in 0..3u64 {
        let handles: Vec<_> = groups
            .iter()
            .enumerate()
            .map(|(t, names)| {
                let (mnt, names) = (mnt.clone(), names.clone());
                std::thread::spawn(move || {
                    stress_worker(&mnt, &names, round * 10 + t as u64 + 1, 1500)
                })
            })
            .collect();
        let models: Vec<(String, Model)> = handles
            .into_iter()
            .zip(&groups)
            .flat_map(|(h, names)| names.clone().into_iter().zip(h.join().unwrap()))
            .collect();
        let unsynced: u64 = models.iter().filter(|(_, m)| m.now != m.synced).count() as u64;
        let report = fx.cut(CutMode::Clean);
        assert_eq!(report.files as u64, unsynced, "round {round}");
        for (name, m) in &models {
            let got = read(&mnt.join(name));
            assert_eq!(got.len(), m.synced.len(), "round {round}: length of {name}");
            assert!(got == m.synced, "round {round}: contents of {name}");
        }
    }
    assert_eq!(fx.fs.stats().cuts, 3);
}

#[test]
fn stats_counters_move() {
    let mut fx = Fixture::new();
    let s0 = fx.fs.stats();
    assert_eq!(s0.writes, 0);
    let path = fx.at("counted");
    {
        let mut f = File::create(&path).unwrap();
        f.write_all(&[1; 1000]).unwrap();
        f.sync_data().unwrap();
        f.write_all(&[2; 300]).unwrap();
        f.write_all(&[3; 200]).unwrap();
    }
    let s1 = fx.fs.stats();
    assert!(s1.writes >= 3, "{s1:?}");
    assert_eq!(s1.bytes_written, 1500);
    assert_eq!(s1.fsyncs, 1);
    assert_eq!(s1.unsynced_bytes, 500);
    assert_eq!(s1.cuts, 0);
    let report = fx.cut(CutMode::Clean);
    assert_eq!(report.bytes_dropped, 500);
    let s2 = fx.fs.stats();
    assert_eq!(s2.cuts, 1);
    assert_eq!(s2.bytes_dropped, 500);
    assert_eq!(s2.unsynced_bytes, 0);
    let json = serde_json::to_value(&s2).unwrap();
    assert_eq!(json["bytes_dropped"], 500);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["files_truncated"], 1);
}

#[test]
fn fallocate_and_the_other_operations_rocksdb_uses_pass_through() {
    let mut fx = Fixture::new();
    fs::create_dir(fx.at("db")).unwrap();
    let wal = fx.at("db/000003.log");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&wal)
        .unwrap();
    // Preallocation that keeps the size, as RocksDB does for WAL files.
    // SAFETY: plain system call on an open descriptor.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, 1 << 20) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    assert_eq!(f.metadata().unwrap().len(), 0);
    f.write_all_at(b"record one", 0).unwrap();
    f.sync_data().unwrap();
    // A size-changing fallocate, not synced: undone.
    // SAFETY: as above.
    assert_eq!(unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, 8192) }, 0);
    assert_eq!(f.metadata().unwrap().len(), 8192);
    drop(f);

    // O_EXCL on an existing file fails.
    let excl = OpenOptions::new().write(true).create_new(true).open(&wal);
    assert_eq!(excl.unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
    // O_APPEND writes go to the end.
    append(&wal, b"");
    {
        let mut f = OpenOptions::new().append(true).open(&wal).unwrap();
        f.write_all(b"!").unwrap();
    }
    assert_eq!(fs::metadata(&wal).unwrap().len(), 8193);

    // Directory listing, hard links, unlink, rmdir, statfs.
    fs::write(fx.at("db/LOCK"), b"").unwrap();
    fs::hard_link(fx.at("db/LOCK"), fx.at("db/LOCK.link")).unwrap();
    assert_eq!(fs::metadata(fx.at("db/LOCK")).unwrap().nlink(), 2);
    let mut names: Vec<String> = fs::read_dir(fx.at("db"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["000003.log", "LOCK", "LOCK.link"]);
    fs::remove_file(fx.at("db/LOCK.link")).unwrap();
    fs::create_dir(fx.at("db/archive")).unwrap();
    fs::remove_dir(fx.at("db/archive")).unwrap();
    let c = std::ffi::CString::new(fx.fs.mountpoint().as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs is plain data; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    assert!(st.f_blocks > 0 && st.f_bsize > 0);

    // A POSIX lock, as RocksDB takes on LOCK.
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .open(fx.at("db/LOCK"))
        .unwrap();
    // SAFETY: flock is plain data.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    // SAFETY: valid descriptor and flock.
    assert_eq!(
        unsafe { libc::fcntl(lock.as_raw_fd(), libc::F_SETLK, &fl) },
        0
    );
    drop(lock);

    let report = fx.cut(CutMode::Clean);
    assert_eq!(read(&wal), b"record one");
    assert_eq!(report.files_truncated, 1);
    assert!(fx.at("db/LOCK").exists());
}

#[test]
fn open_files_follow_renames_and_unlinks() {
    let mut fx = Fixture::new();
    let old = fx.at("old");
    let new = fx.at("new");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&old)
        .unwrap();
    f.write_all(b"hello ").unwrap();
    fs::rename(&old, &new).unwrap();
    f.write_all(b"world").unwrap();
    f.sync_all().unwrap();
    f.write_all(b" and more").unwrap();
    drop(f);

    // An unlinked file stays usable through its descriptor, and is gone after a cut.
    let gone = fx.at("gone");
    let mut g = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&gone)
        .unwrap();
    g.write_all(b"temporary").unwrap();
    fs::remove_file(&gone).unwrap();
    g.write_all(b" data").unwrap();
    let mut back = String::new();
    g.seek(SeekFrom::Start(0)).unwrap();
    g.read_to_string(&mut back).unwrap();
    assert_eq!(back, "temporary data");
    drop(g);

    fx.cut(CutMode::Clean);
    assert_eq!(read(&new), b"hello world");
    assert!(!old.exists() && !gone.exists());
}

#[test]
fn mount_checks_and_remount() {
    let dir = tempfile::tempdir().unwrap();
    let (backing, mnt) = (dir.path().join("backing"), dir.path().join("mnt"));
    // A mount point that is not empty is refused, before any FUSE is involved.
    fs::create_dir_all(&mnt).unwrap();
    fs::write(mnt.join("stray"), b"x").unwrap();
    match PowerFs::mount(&backing, &mnt) {
        Err(PowerFsError::BadMountpoint { reason, .. }) => assert!(reason.contains("not empty")),
        other => panic!("expected a refusal, got {other:?}"),
    }
    fs::remove_file(mnt.join("stray")).unwrap();
    // Nested directories are refused.
    assert!(matches!(
        PowerFs::mount(&backing, &backing.join("inside")),
        Err(PowerFsError::BadMountpoint { .. })
    ));

    let fs1 = PowerFs::mount(&backing, &mnt)
        .unwrap_or_else(|e| panic!("mounting powerfs failed (FUSE needed): {e}"));
    write_synced(&mnt.join("kept"), b"durable");
    fs::write(
        mnt.join("unsynced"),
        b"still here: unmounting is not a power cut",
    )
    .unwrap();
    fs1.unmount().expect("unmount");
    assert_eq!(
        fs::read_dir(&mnt).unwrap().count(),
        0,
        "the mount point is empty again"
    );
    assert_eq!(read(&backing.join("kept")), b"durable");

    let mut fs2 = PowerFs::mount(&backing, &mnt).expect("mount again");
    assert_eq!(read(&mnt.join("kept")), b"durable");
    assert_eq!(
        read(&mnt.join("unsynced")),
        b"still here: unmounting is not a power cut"
    );
    let report = fs2.power_cut(CutMode::Clean).unwrap();
    assert_eq!(report, CutReport::default());
    drop(fs2);
    assert_eq!(fs::read_dir(&mnt).unwrap().count(), 0, "dropping unmounts");
}
