#!/usr/bin/python3
"""powerfs: a FUSE file system that forgets, at a simulated power cut,
every write that was never made durable.

Usage: powerfs.py IMAGE_DIR MOUNTPOINT CONTROL_SOCKET

The model. Every file and directory exists twice, in memory:
- the volatile view: what processes see and change through the mount
  (file contents, a directory's names, modes);
- the durable image: what a disk would still hold after a power cut.
A file's durable contents (and size and mode) become a copy of its
volatile ones when the file is fsync'ed or fdatasync'ed; a write through
a descriptor opened with O_SYNC or O_DSYNC lands in the durable contents
at once (the kernel then also asks FUSE for an fsync of the file, which
makes the whole file durable). A directory's durable names
become a copy of its volatile names when the directory itself is
fsync'ed, and only then: a file created, renamed or unlinked, or a
directory made or removed, is durable only once its parent directory was
fsync'ed (strict POSIX, stricter than most journalling file systems).
A durable name always refers to the durable contents of its inode, even
after the name was unlinked or renamed in the volatile view. A file that
was never fsync'ed is empty in the durable image.

At start-up both views are loaded from IMAGE_DIR, an ordinary directory
tree. The power cut is the command "cut" on the Unix socket
CONTROL_SOCKET (a path, or @name for an abstract socket): under the lock
that every file operation takes, the durable image replaces IMAGE_DIR,
and every later operation fails with EIO, so nothing that happens after
the cut reaches the image, and a process cannot be told "synced" for
anything that is not in it. Then
unmount (the page cache, which may hold forgotten writes, goes with the
mount) and start powerfs again on IMAGE_DIR: the mount shows exactly the
durable image. An unmount without a cut writes the volatile view to
IMAGE_DIR, as a clean shutdown would. "ping" answers "ok".

The reply to "cut" is one JSON line: the number of fsyncs served and the
files whose volatile contents differed from their durable ones at the cut
(with both sizes), which is what the cut forgot.

Of the outcomes a real power cut may have, this is one: every unsynced
write is lost whole. Torn or reordered writes and writes that happen to
reach the disk unsynced are not simulated.

Files are mounted without direct_io, so mmap works (LMDB reads through a
mapping; SQLite maps its -shm index). POSIX locks are left to the kernel
(no lock operation). Links, symlinks, device nodes and extended attributes
are not supported. Everything is kept in memory: for small test stores.
"""

import errno
import json
import os
import shutil
import socket
import stat
import sys
import threading
import time

import fusepy
from fusepy import FUSE, FuseOSError, Operations


def _now():
    return time.time_ns()


class Node:
    _next_ino = [1]

    def __init__(self, is_dir, mode, data=b""):
        self.ino = Node._next_ino[0]
        Node._next_ino[0] += 1
        self.is_dir = is_dir
        self.mode = self.dmode = mode & 0o7777
        self.uid, self.gid = os.getuid(), os.getgid()
        self.atime = self.mtime = self.ctime = _now()
        if is_dir:
            self.entries = {}  # name -> Node, volatile
            self.dentries = {}  # name -> Node, durable
        else:
            self.data = bytearray(data)  # volatile contents
            self.ddata = bytearray(data)  # durable contents


class PowerFS(Operations):
    use_ns = True
    flag_nullpath_ok = 1  # an unlinked file stays usable through its descriptor

    def __init__(self, image):
        self._image = image
        self._mutex = threading.Lock()
        self._cut = False
        self._fsyncs = 0
        self._handles = {}  # fh -> (Node, open flags)
        self._next_fh = 1
        self._root = self._load(image)

    # ------------------------------------------------------------ image

    def _load(self, path):
        node = Node(True, os.stat(path).st_mode)
        for e in os.scandir(path):
            st = e.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                child = self._load(e.path)
            elif stat.S_ISREG(st.st_mode):
                with open(e.path, "rb") as f:
                    child = Node(False, st.st_mode, f.read())
            else:
                continue
            node.entries[e.name] = node.dentries[e.name] = child
        return node

    def _dump(self, durable):
        """Writes one view to IMAGE_DIR, replacing it."""
        tmp = self._image.rstrip("/") + ".new"
        shutil.rmtree(tmp, ignore_errors=True)

        def walk(node, path):
            os.mkdir(path, 0o700)
            for name, child in (node.dentries if durable else node.entries).items():
                p = os.path.join(path, name)
                if child.is_dir:
                    walk(child, p)
                else:
                    with open(p, "wb") as f:
                        f.write(child.ddata if durable else child.data)
                    os.chmod(p, child.dmode if durable else child.mode)
            os.chmod(path, node.dmode if durable else node.mode)
        walk(self._root, tmp)
        shutil.rmtree(self._image)
        os.rename(tmp, self._image)

    def power_cut(self):
        with self._mutex:
            if self._cut:
                return {"error": "already cut"}
            self._cut = True
            forgot = []

            def walk(node, path):
                for name, child in node.entries.items():
                    p = path + "/" + name
                    if child.is_dir:
                        walk(child, p)
                    elif child.data != child.ddata:
                        forgot.append([p, len(child.data), len(child.ddata)])
            walk(self._root, "")
            self._dump(durable=True)
            return {"fsyncs": self._fsyncs, "forgot": forgot}

    # ------------------------------------------------------------ helpers

    def __call__(self, op, *args):
        with self._mutex:
            if self._cut:
                if op in ("release", "releasedir", "flush", "destroy", "init"):
                    return 0
                raise FuseOSError(errno.EIO)
            return getattr(self, op)(*args)

    def _lookup(self, path):
        node = self._root
        for part in [p for p in path.split("/") if p]:
            if not node.is_dir:
                raise FuseOSError(errno.ENOTDIR)
            node = node.entries.get(part)
            if node is None:
                raise FuseOSError(errno.ENOENT)
        return node

    def _parent(self, path):
        head, name = os.path.split(path.rstrip("/"))
        parent = self._lookup(head or "/")
        if not parent.is_dir:
            raise FuseOSError(errno.ENOTDIR)
        return parent, name

    def _node(self, path, fi):
        if fi is not None and fi.fh in self._handles:
            return self._handles[fi.fh][0]
        if path is None:
            raise FuseOSError(errno.EBADF)
        return self._lookup(path)

    def _file(self, path, fi):
        node = self._node(path, fi)
        if node.is_dir:
            raise FuseOSError(errno.EISDIR)
        return node

    def _open(self, node, fi):
        if fi.flags & os.O_TRUNC:
            del node.data[:]
            node.mtime = _now()
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = (node, fi.flags)
        fi.fh = fh
        fi.direct_io = 0  # page cache and mmap as on a disk file system
        fi.keep_cache = 0
        return 0

    # ------------------------------------------------------------ operations

    def getattr(self, path, fi=None):
        n = self._node(path, fi)
        if n.is_dir:
            mode = stat.S_IFDIR | n.mode
            size = 4096
            nlink = 2 + sum(1 for c in n.entries.values() if c.is_dir)
        else:
            mode = stat.S_IFREG | n.mode
            size = len(n.data)
            nlink = 1
        return {"st_mode": mode, "st_ino": n.ino, "st_nlink": nlink, "st_size": size,
                "st_uid": n.uid, "st_gid": n.gid, "st_blksize": 4096,
                "st_blocks": (size + 511) // 512, "st_atime": n.atime,
                "st_mtime": n.mtime, "st_ctime": n.ctime}

    def access(self, path, amode):
        self._lookup(path)
        return 0

    def statfs(self, path):
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": 1 << 20,
                "f_bfree": 1 << 19, "f_bavail": 1 << 19, "f_files": 1 << 16,
                "f_ffree": 1 << 15, "f_namemax": 255}

    def chmod(self, path, mode):
        n = self._lookup(path)
        n.mode = mode & 0o7777
        n.ctime = _now()
        return 0

    def chown(self, path, uid, gid):
        n = self._lookup(path)
        if uid != -1:
            n.uid = uid
        if gid != -1:
            n.gid = gid
        return 0

    def utimens(self, path, times=None):
        n = self._lookup(path)
        n.atime, n.mtime = times if times else (_now(), _now())
        return 0

    def mkdir(self, path, mode):
        parent, name = self._parent(path)
        if name in parent.entries:
            raise FuseOSError(errno.EEXIST)
        parent.entries[name] = Node(True, mode)
        parent.mtime = _now()
        return 0

    def rmdir(self, path):
        parent, name = self._parent(path)
        n = parent.entries.get(name)
        if n is None:
            raise FuseOSError(errno.ENOENT)
        if not n.is_dir:
            raise FuseOSError(errno.ENOTDIR)
        if n.entries:
            raise FuseOSError(errno.ENOTEMPTY)
        del parent.entries[name]
        parent.mtime = _now()
        return 0

    def unlink(self, path):
        parent, name = self._parent(path)
        n = parent.entries.get(name)
        if n is None:
            raise FuseOSError(errno.ENOENT)
        if n.is_dir:
            raise FuseOSError(errno.EISDIR)
        del parent.entries[name]
        parent.mtime = _now()
        return 0

    def rename(self, old, new):
        sp, sname = self._parent(old)
        dp, dname = self._parent(new)
        n = sp.entries.get(sname)
        if n is None:
            raise FuseOSError(errno.ENOENT)
        if (new.rstrip("/") + "/").startswith(old.rstrip("/") + "/") and n.is_dir \
                and new.rstrip("/") != old.rstrip("/"):
            raise FuseOSError(errno.EINVAL)  # a directory into itself
        t = dp.entries.get(dname)
        if t is n:
            return 0
        if t is not None:
            if t.is_dir and not n.is_dir:
                raise FuseOSError(errno.EISDIR)
            if n.is_dir and not t.is_dir:
                raise FuseOSError(errno.ENOTDIR)
            if t.is_dir and t.entries:
                raise FuseOSError(errno.ENOTEMPTY)
        del sp.entries[sname]
        dp.entries[dname] = n
        sp.mtime = dp.mtime = n.ctime = _now()
        return 0

    def create(self, path, mode, fi):
        parent, name = self._parent(path)
        n = parent.entries.get(name)
        if n is not None:
            if fi.flags & os.O_EXCL:
                raise FuseOSError(errno.EEXIST)
            if n.is_dir:
                raise FuseOSError(errno.EISDIR)
        else:
            n = parent.entries[name] = Node(False, mode)
            parent.mtime = _now()
        return self._open(n, fi)

    def open(self, path, fi):
        return self._open(self._file(path, None), fi)

    def read(self, path, size, offset, fi):
        return bytes(self._file(path, fi).data[offset:offset + size])

    def write(self, path, data, offset, fi):
        n = self._file(path, fi)
        flags = self._handles[fi.fh][1] if fi is not None and fi.fh in self._handles else 0
        for buf in ([n.data, n.ddata] if flags & os.O_DSYNC else [n.data]):
            if len(buf) < offset:
                buf.extend(bytes(offset - len(buf)))
            buf[offset:offset + len(data)] = data
        n.mtime = _now()
        return len(data)

    def truncate(self, path, length, fi=None):
        n = self._file(path, fi)
        if length < len(n.data):
            del n.data[length:]
        else:
            n.data.extend(bytes(length - len(n.data)))
        n.mtime = _now()
        return 0

    def flush(self, path, fi):
        return 0

    def release(self, path, fi):
        self._handles.pop(fi.fh, None)
        return 0

    def fsync(self, path, datasync, fi):
        n = self._file(path, fi)
        n.ddata = bytearray(n.data)
        n.dmode = n.mode
        self._fsyncs += 1
        return 0

    def opendir(self, path):
        if not self._lookup(path).is_dir:
            raise FuseOSError(errno.ENOTDIR)
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = (self._lookup(path), 0)
        return fh

    def readdir(self, path, fh):
        n = self._handles[fh][0] if fh in self._handles else self._lookup(path)
        return [".", ".."] + list(n.entries)

    def releasedir(self, path, fh):
        self._handles.pop(fh, None)
        return 0

    def fsyncdir(self, path, datasync, fh):
        n = self._handles[fh][0] if fh in self._handles else self._lookup(path)
        n.dentries = dict(n.entries)
        n.dmode = n.mode
        self._fsyncs += 1
        return 0

    def destroy(self, path):
        # Reached only without a cut (see __call__): a clean unmount, after
        # which everything the processes wrote is on the disk.
        self._dump(durable=False)
        return 0


def _control(fs, path):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind("\0" + path[1:] if path.startswith("@") else path)
    srv.listen(4)
    while True:
        conn, _ = srv.accept()
        with conn:
            cmd = conn.makefile("r").readline().strip()
            if cmd == "ping":
                reply = "ok"
            elif cmd == "cut":
                reply = json.dumps(fs.power_cut())
            else:
                reply = json.dumps({"error": "unknown command %r" % cmd})
            conn.sendall(reply.encode() + b"\n")


def main():
    if len(sys.argv) != 4:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    image, mountpoint, control = sys.argv[1:]
    fs = PowerFS(image)
    threading.Thread(target=_control, args=(fs, control), daemon=True).start()
    fusepy.log.setLevel("ERROR")
    FUSE(fs, mountpoint, raw_fi=True, foreground=True, nothreads=True, fsname="powerfs",
         hard_remove=True, use_ino=True, big_writes=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
