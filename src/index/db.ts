// Opens the cache's SQLite file (index, journal and conflicts live in one file so that a
// mutation and its journal record can share one transaction) and brings its schema up to
// date. The schema is versioned in `meta.schema_version`; migrations only ever move forward,
// each inside its own transaction, so a crash mid-migration leaves the previous version.
import Database from 'better-sqlite3';
import { UserError } from '../core/errors.js';

export type Db = Database.Database;

/** Each entry brings the schema from version i to i + 1. Never edit a released migration. */
const MIGRATIONS: readonly string[] = [
  // v1: objects, names, cached chunks, journal, conflicts.
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

  -- One row per backend object. id is the inode number the mount shows: AUTOINCREMENT so a
  -- number is never handed out twice, which keeps inode numbers stable across remounts.
  CREATE TABLE objects (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    fsid         TEXT    NOT NULL,           -- backend filesystem + export the handle belongs to
    fh           BLOB    NOT NULL,           -- the backend's opaque file handle
    type         TEXT    NOT NULL,           -- file | dir | symlink | fifo | socket | chardev | blockdev
    mode         INTEGER NOT NULL,           -- st_mode including type bits
    uid          INTEGER NOT NULL,
    gid          INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    nlink        INTEGER NOT NULL,
    rdev         INTEGER NOT NULL,
    used         INTEGER NOT NULL,           -- bytes allocated on the backend
    atime_ns     TEXT    NOT NULL,           -- decimal nanoseconds since the epoch
    mtime_ns     TEXT    NOT NULL,
    ctime_ns     TEXT    NOT NULL,
    version      TEXT    NOT NULL,           -- backend version of these attributes
    data_version TEXT,                       -- version the cached bytes belong to; NULL = none
    names_version TEXT,                      -- dirs: version the cached names belong to
    complete     INTEGER NOT NULL DEFAULT 0, -- dirs: 1 if names holds the whole listing
    symlink      TEXT,                       -- symlinks: cached target
    cached_bytes INTEGER NOT NULL DEFAULT 0, -- bytes of chunks present in the data file
    last_access  INTEGER NOT NULL DEFAULT 0, -- ms since the epoch, for LRU culling
    UNIQUE (fsid, fh)
  );

  -- The name cache: (parent, name) -> child; child NULL is a negative entry.
  CREATE TABLE names (
    parent INTEGER NOT NULL,
    name   TEXT    NOT NULL,
    child  INTEGER,
    PRIMARY KEY (parent, name)
  ) WITHOUT ROWID;
  CREATE INDEX names_child ON names (child);

  -- Cached chunks of an object's data file (chunk i covers [i*chunk, (i+1)*chunk)).
  CREATE TABLE chunks (
    object INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    PRIMARY KEY (object, idx)
  ) WITHOUT ROWID;

  -- The replay journal: mutations not yet applied to the backend, in order.
  CREATE TABLE journal (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    record     TEXT    NOT NULL,   -- JSON of a JournalRecord (src/journal/records.ts)
    created_at INTEGER NOT NULL,   -- ms since the epoch
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT               -- why the last replay attempt failed, if it did
  );

  -- Conflicts found on replay; both variants are kept until the user resolves them.
  CREATE TABLE conflicts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL,
    path        TEXT    NOT NULL,
    object      INTEGER,
    record      TEXT    NOT NULL,  -- the journal record that conflicted (JSON)
    base_version   TEXT,
    server_version TEXT,
    detected_at INTEGER NOT NULL,
    resolved_at INTEGER
  );
  `,
  // v2: where a conflict's client variant was saved (a copy of the cached data), and every
  // record parked with it (JSON array, the conflicting one first).
  `
  ALTER TABLE conflicts ADD COLUMN client_copy TEXT;
  ALTER TABLE conflicts ADD COLUMN records TEXT;
  `,
  // v3: during a reintegration, the version each object has on the backend after the last
  // record replayed to it (survives a crash, so a resumed replay knows its own changes).
  `
  CREATE TABLE replay_versions (
    object  INTEGER PRIMARY KEY,
    version TEXT NOT NULL
  );
  `,
  // v4: conflicts get their variants' directory (client, server, base, resolved), the
  // reintegration (epoch) that found them, and how they were resolved; objects changed while
  // disconnected keep the attributes (and, for small files, the bytes) they had before the
  // first offline change, so replay can tell whose change is whose and merge.
  `
  ALTER TABLE conflicts ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE conflicts ADD COLUMN dir TEXT;
  ALTER TABLE conflicts ADD COLUMN client_version TEXT;
  ALTER TABLE conflicts ADD COLUMN resolution TEXT;
  ALTER TABLE conflicts ADD COLUMN resolved_by TEXT;
  ALTER TABLE conflicts ADD COLUMN detail TEXT;
  CREATE TABLE offline_bases (
    object  INTEGER PRIMARY KEY,
    version TEXT NOT NULL,   -- the backend version the cache had before the first offline change
    attr    TEXT NOT NULL,   -- JSON: mode, uid, gid, size, mtimeNs, type
    data    TEXT             -- a copy of the bytes then (small files only), or NULL
  );
  `,
  // v5: pins (hoarding): paths from the mount root, or glob patterns, with a priority.
  `
  CREATE TABLE pins (
    path       TEXT    PRIMARY KEY,    -- '/docs/a.txt', '/src' or (glob = 1) a pattern like '/notes/**/*.md'
    recursive  INTEGER NOT NULL,       -- a directory pin covers its whole tree (1) or its own entries (0)
    glob       INTEGER NOT NULL DEFAULT 0,
    priority   INTEGER NOT NULL DEFAULT 0,  -- higher first when hoarding
    created_at INTEGER NOT NULL
  );
  `,
  // v6: where a file's known zeros start, so growing a file (a truncate up, a write past its
  // end) costs one value, not a row per chunk (a truncate to 1 TiB was a million rows).
  `
  ALTER TABLE objects ADD COLUMN zeros_from INTEGER;  -- bytes at or past this that no cached chunk holds are zeros; NULL = no such promise
  `,
  // v7: files the kernel may be writing directly into their cache file (FUSE passthrough for
  // writes): the file may hold bytes no journal record has. A row is written before such an
  // open is answered and removed once its last one is released and journaled; the next
  // start journals the file of any row left (layers/direct-writes.ts).
  `
  CREATE TABLE direct_writes (
    object INTEGER PRIMARY KEY,  -- objects.id
    by     TEXT                  -- JSON credentials the writes replay as; NULL = the mount's own
  );
  `,
  // v8: a directory's disconnected answer (ObjectIndex: CachedObject.stale), kept across
  // restarts: the names it showed before its version moved, or the listing kept at the first
  // lookup in a directory never listed. In memory only, it was lost by a mount that ended
  // offline, and the next one (still offline: the laptop rebooted on the train) answered
  // EHOSTUNREACH for listings and creates in directories the last one could list and make
  // names in. Cleared by a fresh listing.
  `
  ALTER TABLE objects ADD COLUMN stale INTEGER;  -- dirs: NULL = no stale listing; 1 = it is complete, 0 = partial
  CREATE TABLE stale_names (
    parent INTEGER NOT NULL,  -- objects.id of the directory
    name   TEXT    NOT NULL,
    child  INTEGER,           -- objects.id; NULL = known absent then
    PRIMARY KEY (parent, name)
  ) WITHOUT ROWID;
  CREATE INDEX stale_names_child ON stale_names (child);
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

export function openDb(file: string): Db {
  let db: Db;
  try {
    db = new Database(file);
  } catch (e) {
    throw new UserError(`cannot open the cache database ${file}: ${(e as Error).message}`, {
      hint: 'check that the cache directory is writable and not on a full disk',
    });
  }
  db.pragma('journal_mode = WAL');
  // NORMAL in WAL mode: a commit survives a process crash; only an OS crash may lose the
  // last transactions, never corrupt the file. Journal appends that must survive power loss
  // (fsync while disconnected) call makeDurable() below.
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = OFF');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  return db;
}

/**
 * Makes every transaction committed so far survive power loss (fsync() while disconnected):
 * a checkpoint syncs the WAL before it copies pages into the database file, and the file
 * after. Under synchronous=NORMAL that is the only point where committed frames are synced.
 */
export function makeDurable(db: Db): void {
  db.pragma('wal_checkpoint(PASSIVE)');
}

function currentVersion(db: Db): number {
  const hasMeta = db.prepare(`SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'`).get();
  if (!hasMeta) return 0;
  const row = db.prepare(`SELECT value FROM meta WHERE key='schema_version'`).get() as { value: string } | undefined;
  return row ? Number(row.value) : 0;
}

function migrate(db: Db): void {
  let v = currentVersion(db);
  if (v > SCHEMA_VERSION) {
    throw new UserError(`the cache was written by a newer cachefs (schema ${v}, this one knows ${SCHEMA_VERSION})`, {
      hint: 'upgrade cachefs, or use another --cache-dir',
    });
  }
  while (v < SCHEMA_VERSION) {
    const sql = MIGRATIONS[v]!;
    const next = v + 1;
    db.transaction(() => {
      db.exec(sql);
      db.prepare(`INSERT INTO meta (key, value) VALUES ('schema_version', ?)
                  ON CONFLICT(key) DO UPDATE SET value = excluded.value`).run(String(next));
    })();
    v = next;
  }
}

export function getMeta(db: Db, key: string): string | undefined {
  const row = db.prepare(`SELECT value FROM meta WHERE key = ?`).get(key) as { value: string } | undefined;
  return row?.value;
}

export function setMeta(db: Db, key: string, value: string): void {
  db.prepare(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`).run(key, value);
}
