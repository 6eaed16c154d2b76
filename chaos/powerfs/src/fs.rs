//! The FUSE operations: a pass-through to the backing directory, with every change to file
//! data going through the [`Tracker`].
//!
//! Inodes of the mount are numbered by this file system; each maps to the backing file's
//! device and inode number and to its last known path relative to the backing directory.
//! Open files keep a descriptor of the backing file, so reads, writes and syncs through a
//! handle work after the file was renamed or unlinked. Entries and attributes are given to
//! the kernel with a zero time to live and files are opened with direct I/O, so the kernel
//! caches neither data nor sizes: what a reader sees is always the backing file.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{
    DirBuilderExt, DirEntryExt, FileExt, FileTypeExt, MetadataExt, OpenOptionsExt,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::tracker::{Change, Changed, FileKey, Tracker};

/// Entries and attributes are not cached by the kernel: a cut changes sizes behind its back.
const TTL: Duration = Duration::ZERO;

/// One inode of the mount.
#[derive(Debug)]
struct Node {
    /// Path relative to the backing directory; `None` once the last known name is gone.
    path: Option<PathBuf>,
    key: FileKey,
    /// Lookups the kernel holds (released by `forget`).
    lookups: u64,
}

/// The inode table.
#[derive(Debug, Default)]
struct Inodes {
    nodes: HashMap<u64, Node>,
    by_key: HashMap<FileKey, u64>,
    next: u64,
}

impl Inodes {
    /// The inode for the backing file `key` at `path`, counting one kernel lookup.
    fn remember(&mut self, key: FileKey, path: PathBuf) -> u64 {
        if let Some(&ino) = self.by_key.get(&key) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.path = Some(path);
                node.lookups += 1;
                return ino;
            }
        }
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(
            ino,
            Node {
                path: Some(path),
                key,
                lookups: 1,
            },
        );
        self.by_key.insert(key, ino);
        ino
    }

    /// The backing file `key` lost its last name: a new file with the same inode number is
    /// a new inode of the mount.
    fn unlinked(&mut self, key: FileKey) {
        if let Some(ino) = self.by_key.remove(&key) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.path = None;
            }
        }
    }

    /// `from` was renamed to `to` (a file or a whole directory tree).
    fn renamed(&mut self, from: &Path, to: &Path) {
        for node in self.nodes.values_mut() {
            if let Some(p) = &node.path {
                if let Ok(rest) = p.strip_prefix(from) {
                    node.path = Some(if rest.as_os_str().is_empty() {
                        to.to_path_buf()
                    } else {
                        to.join(rest)
                    });
                }
            }
        }
    }

    /// `a` and `b` were exchanged.
    fn exchanged(&mut self, a: &Path, b: &Path) {
        for node in self.nodes.values_mut() {
            if let Some(p) = &node.path {
                let swapped = if let Ok(rest) = p.strip_prefix(a) {
                    Some(b.join(rest))
                } else if let Ok(rest) = p.strip_prefix(b) {
                    Some(a.join(rest))
                } else {
                    None
                };
                if let Some(s) = swapped {
                    node.path = Some(s);
                }
            }
        }
    }
}

/// An open file.
#[derive(Debug)]
struct Handle {
    file: File,
    key: FileKey,
    /// Opened with `O_APPEND`: writes go to the end whatever offset the kernel sends.
    append: bool,
    /// Opened with `O_SYNC` or `O_DSYNC`: every write is durable.
    sync: bool,
}

/// An open directory: its entries, read at `opendir`.
#[derive(Debug)]
struct DirHandle {
    entries: Vec<(OsString, FileType, u64)>,
}

/// The attributes a `setattr` changes.
struct SetAttr {
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    atime: Option<TimeOrNow>,
    mtime: Option<TimeOrNow>,
}

/// State shared between the file system and [`crate::PowerFs`].
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) tracker: Tracker,
    inodes: Mutex<Inodes>,
}

impl Shared {
    /// The inode numbers the kernel may hold.
    pub(crate) fn known_inodes(&self) -> Vec<u64> {
        lock(&self.inodes).nodes.keys().copied().collect()
    }
}

/// The file system served on the mount.
#[derive(Debug)]
pub(crate) struct PowerFilesystem {
    backing: PathBuf,
    shared: Arc<Shared>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    dirs: Mutex<HashMap<u64, Arc<DirHandle>>>,
    next_fh: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn errno(e: &io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

fn key_of(m: &std::fs::Metadata) -> FileKey {
    FileKey {
        dev: m.dev(),
        ino: m.ino(),
    }
}

fn kind_of(t: std::fs::FileType) -> FileType {
    if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else if t.is_fifo() {
        FileType::NamedPipe
    } else if t.is_socket() {
        FileType::Socket
    } else if t.is_char_device() {
        FileType::CharDevice
    } else if t.is_block_device() {
        FileType::BlockDevice
    } else {
        FileType::RegularFile
    }
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    let nsecs = u32::try_from(nsecs).unwrap_or(0);
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs)
    } else {
        UNIX_EPOCH - Duration::new(secs.unsigned_abs(), 0) + Duration::new(0, nsecs)
    }
}

fn attr(ino: u64, m: &std::fs::Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: m.size(),
        blocks: m.blocks(),
        atime: time(m.atime(), m.atime_nsec()),
        mtime: time(m.mtime(), m.mtime_nsec()),
        ctime: time(m.ctime(), m.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: kind_of(m.file_type()),
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: m.blksize() as u32,
        flags: 0,
    }
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn to_timespec(t: Option<TimeOrNow>) -> libc::timespec {
    match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(TimeOrNow::SpecificTime(t)) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
            Err(e) => {
                let d = e.duration();
                let mut secs = -(d.as_secs() as i64);
                let mut nsecs = -(d.subsec_nanos() as i64);
                if nsecs < 0 {
                    secs -= 1;
                    nsecs += 1_000_000_000;
                }
                libc::timespec {
                    tv_sec: secs as libc::time_t,
                    tv_nsec: nsecs as libc::c_long,
                }
            }
        },
    }
}

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Opens a backing file for a handle. Write-only opens are made read-write, because the
/// bookkeeping reads the bytes a write replaces.
fn open_backing(path: &Path, flags: i32, create_mode: Option<u32>) -> io::Result<File> {
    let acc = flags & libc::O_ACCMODE;
    // Flags handled here (O_TRUNC, O_APPEND), by the kernel (O_CREAT), or that would change
    // how the backing file must be accessed (O_DIRECT needs aligned buffers).
    let passed = flags
        & !(libc::O_ACCMODE
            | libc::O_CREAT
            | libc::O_EXCL
            | libc::O_TRUNC
            | libc::O_APPEND
            | libc::O_DIRECT
            | libc::O_NOCTTY);
    let open = |acc: i32| {
        let mut o = OpenOptions::new();
        o.read(acc != libc::O_WRONLY).write(acc != libc::O_RDONLY);
        if let Some(mode) = create_mode {
            if flags & libc::O_EXCL != 0 {
                o.create_new(true);
            } else {
                o.create(true);
            }
            o.mode(mode);
        }
        o.custom_flags(passed | libc::O_CLOEXEC);
        o.open(path)
    };
    if acc == libc::O_WRONLY {
        match open(libc::O_RDWR) {
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => open(acc),
            r => r,
        }
    } else {
        open(acc)
    }
}

impl PowerFilesystem {
    /// A file system over `backing` (an absolute path to a directory).
    pub(crate) fn new(backing: PathBuf) -> io::Result<(PowerFilesystem, Arc<Shared>)> {
        let root = std::fs::metadata(&backing)?;
        let mut inodes = Inodes {
            next: 2,
            ..Inodes::default()
        };
        let key = key_of(&root);
        inodes.nodes.insert(
            1,
            Node {
                path: Some(PathBuf::new()),
                key,
                lookups: 1,
            },
        );
        inodes.by_key.insert(key, 1);
        let shared = Arc::new(Shared {
            tracker: Tracker::default(),
            inodes: Mutex::new(inodes),
        });
        Ok((
            PowerFilesystem {
                backing,
                shared: shared.clone(),
                handles: Mutex::new(HashMap::new()),
                dirs: Mutex::new(HashMap::new()),
                next_fh: AtomicU64::new(1),
            },
            shared,
        ))
    }

    fn inodes(&self) -> MutexGuard<'_, Inodes> {
        lock(&self.shared.inodes)
    }

    /// The relative path of inode `ino`.
    fn rel(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        match self.inodes().nodes.get(&ino.0) {
            Some(Node { path: Some(p), .. }) => Ok(p.clone()),
            Some(_) => Err(Errno::ENOENT),
            None => Err(Errno::ESTALE),
        }
    }

    /// The relative path of `name` in directory `parent`.
    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        if name.as_bytes().contains(&b'/') || name == ".." || name == "." {
            return Err(Errno::EINVAL);
        }
        Ok(self.rel(parent)?.join(name))
    }

    fn abs(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.backing.clone()
        } else {
            self.backing.join(rel)
        }
    }

    /// Looks up `rel` in the backing directory and counts a kernel lookup of it.
    fn entry(&self, rel: PathBuf) -> io::Result<FileAttr> {
        let m = std::fs::symlink_metadata(self.abs(&rel))?;
        let ino = self.inodes().remember(key_of(&m), rel);
        Ok(attr(ino, &m))
    }

    fn handle(&self, fh: FileHandle) -> Result<Arc<Handle>, Errno> {
        lock(&self.handles).get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    fn add_handle(&self, file: File, flags: i32) -> io::Result<u64> {
        let key = FileKey::of(&file)?;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let handle = Handle {
            file,
            key,
            append: flags & libc::O_APPEND != 0,
            sync: flags & (libc::O_SYNC | libc::O_DSYNC) != 0,
        };
        lock(&self.handles).insert(fh, Arc::new(handle));
        Ok(fh)
    }

    /// `O_TRUNC` on open: a length change like any other.
    fn truncate_on_open(&self, file: &File, flags: i32) -> io::Result<()> {
        if flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY {
            let m = file.metadata()?;
            if m.is_file() {
                self.shared
                    .tracker
                    .change(key_of(&m), file, Change::SetLen(0))?;
            }
        }
        Ok(())
    }

    /// The backing file `key` may have lost its last name.
    fn maybe_deleted(&self, key: FileKey, nlink_before: u64, is_dir: bool) {
        if is_dir || nlink_before <= 1 {
            self.inodes().unlinked(key);
        }
        if !is_dir {
            self.shared.tracker.forget_if_deleted(key);
        }
    }

    /// `unlink` and `rmdir`: removes the entry from the backing directory, then forgets
    /// the inode (and a file's unsynced data) if that was its last name.
    fn remove(&self, parent: INodeNo, name: &OsStr, is_dir: bool, reply: ReplyEmpty) {
        let rel = match self.child(parent, name) {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        let abs = self.abs(&rel);
        let before = std::fs::symlink_metadata(&abs);
        let removed = if is_dir {
            std::fs::remove_dir(&abs)
        } else {
            std::fs::remove_file(&abs)
        };
        match removed {
            Ok(()) => {
                if let Ok(m) = before {
                    self.maybe_deleted(key_of(&m), m.nlink(), is_dir);
                }
                reply.ok();
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn do_setattr(
        &self,
        ino: INodeNo,
        fh: Option<FileHandle>,
        set: SetAttr,
    ) -> Result<FileAttr, Errno> {
        let SetAttr {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        } = set;
        let handle = match fh {
            Some(fh) => self.handle(fh).ok(),
            None => None,
        };
        let path = match &handle {
            Some(_) => None,
            None => Some(self.abs(&self.rel(ino)?)),
        };
        let e = |e: io::Error| errno(&e);
        if let Some(size) = size {
            match &handle {
                Some(h) => {
                    self.shared
                        .tracker
                        .change(h.key, &h.file, Change::SetLen(size))
                        .map_err(e)?;
                }
                None => {
                    let p = path.as_ref().expect("a path without a handle");
                    let f = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .custom_flags(libc::O_CLOEXEC)
                        .open(p)
                        .map_err(e)?;
                    let key = FileKey::of(&f).map_err(e)?;
                    self.shared
                        .tracker
                        .change(key, &f, Change::SetLen(size))
                        .map_err(e)?;
                }
            }
        }
        if let Some(mode) = mode {
            match (&handle, &path) {
                (Some(h), _) => {
                    use std::os::fd::AsRawFd;
                    // SAFETY: plain system call on a descriptor we own.
                    cvt(unsafe { libc::fchmod(h.file.as_raw_fd(), mode & 0o7777) }).map_err(e)?;
                }
                (None, Some(p)) => {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode & 0o7777))
                        .map_err(e)?;
                }
                (None, None) => unreachable!(),
            }
        }
        if uid.is_some() || gid.is_some() {
            let p = match &path {
                Some(p) => p.clone(),
                None => self.abs(&self.rel(ino)?),
            };
            std::os::unix::fs::lchown(&p, uid, gid).map_err(e)?;
        }
        if atime.is_some() || mtime.is_some() {
            let times = [to_timespec(atime), to_timespec(mtime)];
            match (&handle, &path) {
                (Some(h), _) => {
                    use std::os::fd::AsRawFd;
                    // SAFETY: `times` is a valid array of two timespecs.
                    cvt(unsafe { libc::futimens(h.file.as_raw_fd(), times.as_ptr()) })
                        .map_err(e)?;
                }
                (None, Some(p)) => {
                    let c = cstring(p).map_err(e)?;
                    // SAFETY: `c` is a valid C string and `times` two valid timespecs.
                    cvt(unsafe {
                        libc::utimensat(
                            libc::AT_FDCWD,
                            c.as_ptr(),
                            times.as_ptr(),
                            libc::AT_SYMLINK_NOFOLLOW,
                        )
                    })
                    .map_err(e)?;
                }
                (None, None) => unreachable!(),
            }
        }
        let m = match (&handle, &path) {
            (Some(h), _) => h.file.metadata(),
            (None, Some(p)) => std::fs::symlink_metadata(p),
            (None, None) => unreachable!(),
        }
        .map_err(e)?;
        Ok(attr(ino.0, &m))
    }
}

impl Filesystem for PowerFilesystem {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let rel = match self.child(parent, name) {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        match self.entry(rel) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if ino == INodeNo::ROOT {
            return;
        }
        let mut inodes = self.inodes();
        let gone = match inodes.nodes.get_mut(&ino.0) {
            Some(node) => {
                node.lookups = node.lookups.saturating_sub(nlookup);
                (node.lookups == 0).then_some(node.key)
            }
            None => None,
        };
        if let Some(key) = gone {
            inodes.nodes.remove(&ino.0);
            if inodes.by_key.get(&key) == Some(&ino.0) {
                inodes.by_key.remove(&key);
            }
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let m = match fh.and_then(|fh| self.handle(fh).ok()) {
            Some(h) => h.file.metadata(),
            None => match self.rel(ino) {
                Ok(rel) => std::fs::symlink_metadata(self.abs(&rel)),
                Err(e) => return reply.error(e),
            },
        };
        match m {
            Ok(m) => reply.attr(&TTL, &attr(ino.0, &m)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        };
        match self.do_setattr(ino, fh, set) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let rel = match self.rel(ino) {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        match std::fs::read_link(self.abs(&rel)) {
            Ok(t) => reply.data(t.as_os_str().as_bytes()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let rel = match self.child(parent, name) {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        let made = std::fs::DirBuilder::new()
            .mode(mode & 0o7777)
            .create(self.abs(&rel));
        match made.and_then(|()| self.entry(rel)) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, false, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, true, reply);
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let rel = match self.child(parent, link_name) {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        match std::os::unix::fs::symlink(target, self.abs(&rel)).and_then(|()| self.entry(rel)) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (from, to) = match (self.child(parent, name), self.child(newparent, newname)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        let (abs_from, abs_to) = (self.abs(&from), self.abs(&to));
        let source = std::fs::symlink_metadata(&abs_from);
        let target = std::fs::symlink_metadata(&abs_to);
        let done = (|| -> io::Result<()> {
            let (a, b) = (cstring(&abs_from)?, cstring(&abs_to)?);
            // SAFETY: both are valid C strings.
            cvt(unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    a.as_ptr(),
                    libc::AT_FDCWD,
                    b.as_ptr(),
                    flags.bits(),
                )
            })
        })();
        if let Err(e) = done {
            return reply.error(errno(&e));
        }
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            self.inodes().exchanged(&from, &to);
            return reply.ok();
        }
        // A replaced target may have lost its last name.
        if let (Ok(t), Ok(s)) = (&target, &source) {
            if key_of(t) != key_of(s) {
                self.maybe_deleted(key_of(t), t.nlink(), t.is_dir());
            }
        }
        self.inodes().renamed(&from, &to);
        reply.ok();
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let (src, dst) = match (self.rel(ino), self.child(newparent, newname)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        match std::fs::hard_link(self.abs(&src), self.abs(&dst)).and_then(|()| self.entry(dst)) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let rel = match self.rel(ino) {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        let opened = (|| -> io::Result<u64> {
            let file = open_backing(&self.abs(&rel), flags.0, None)?;
            self.truncate_on_open(&file, flags.0)?;
            self.add_handle(file, flags.0)
        })();
        match opened {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let mut buf = vec![0; size as usize];
        let mut done = 0;
        while done < buf.len() {
            match h.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return reply.error(errno(&e)),
            }
        }
        reply.data(&buf[..done]);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let change = Change::Write {
            offset,
            data,
            append: h.append,
        };
        match self.shared.tracker.change(h.key, &h.file, change) {
            Ok(Changed::Written(n)) => {
                if h.sync {
                    self.shared.tracker.synced(h.key);
                }
                reply.written(n as u32)
            }
            Ok(Changed::Done) => reply.written(0),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let h = lock(&self.handles).remove(&fh.0);
        if let Some(h) = h {
            if h.file.metadata().map(|m| m.nlink() == 0).unwrap_or(false) {
                self.shared.tracker.forget_if_deleted(h.key);
            }
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Both fsync and fdatasync make the data durable. The backing file is not synced:
        // the machine under the backing directory is assumed not to lose power.
        match self.handle(fh) {
            Ok(h) => {
                self.shared.tracker.synced(h.key);
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let rel = match self.rel(ino) {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        let listed = (|| -> io::Result<Vec<(OsString, FileType, u64)>> {
            let abs = self.abs(&rel);
            let me = std::fs::metadata(&abs)?;
            let up = std::fs::metadata(abs.join("..")).unwrap_or_else(|_| me.clone());
            let mut entries = vec![
                (OsString::from("."), FileType::Directory, me.ino()),
                (OsString::from(".."), FileType::Directory, up.ino()),
            ];
            for d in std::fs::read_dir(&abs)? {
                let d = d?;
                let kind = d.file_type().map(kind_of).unwrap_or(FileType::RegularFile);
                entries.push((d.file_name(), kind, d.ino()));
            }
            Ok(entries)
        })();
        match listed {
            Ok(entries) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                lock(&self.dirs).insert(fh, Arc::new(DirHandle { entries }));
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let dir = match lock(&self.dirs).get(&fh.0).cloned() {
            Some(d) => d,
            None => return reply.error(Errno::EBADF),
        };
        for (i, (name, kind, ino)) in dir.entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.dirs).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Metadata is durable as soon as it is changed.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let c = match cstring(&self.backing) {
            Ok(c) => c,
            Err(e) => return reply.error(errno(&e)),
        };
        // SAFETY: statvfs is plain old data; zeroes are a valid value.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid C string and `s` a valid statvfs to fill.
        match cvt(unsafe { libc::statvfs(c.as_ptr(), &mut s) }) {
            Ok(()) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let checked = self
            .rel(ino)
            .and_then(|rel| cstring(&self.abs(&rel)).map_err(|e| errno(&e)))
            .and_then(|c| {
                // SAFETY: `c` is a valid C string.
                cvt(unsafe { libc::access(c.as_ptr(), mask.bits()) }).map_err(|e| errno(&e))
            });
        match checked {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let rel = match self.child(parent, name) {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        let created = (|| -> io::Result<(FileAttr, u64)> {
            let file = open_backing(&self.abs(&rel), flags, Some(mode & 0o7777))?;
            self.truncate_on_open(&file, flags)?;
            let m = file.metadata()?;
            let fh = self.add_handle(file, flags)?;
            let ino = self.inodes().remember(key_of(&m), rel);
            Ok((attr(ino, &m), fh))
        })();
        match created {
            Ok((a, fh)) => reply.created(
                &TTL,
                &a,
                Generation(0),
                FileHandle(fh),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let change = Change::Fallocate {
            mode,
            offset,
            len: length,
        };
        match self.shared.tracker.change(h.key, &h.file, change) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }
}
