//! devhub's state in SQLite: identities, twins, C2D queues, persistent MQTT sessions,
//! received telemetry and settings.
//!
//! The database runs in WAL mode. Every write that devhub acknowledges (CONNACK, SUBACK,
//! PUBACK, a 2xx REST answer) is committed first, so a `kill -9` of devhub loses nothing
//! it acknowledged: a committed WAL transaction survives the death of the process.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use twinscope_proto::iothub::twin::TwinSection;

pub use rusqlite::Error as StoreError;

/// A device or module identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRecord {
    /// Device id.
    pub device_id: String,
    /// Module id, for a module.
    pub module_id: Option<String>,
    /// Primary symmetric key, base64.
    pub primary_key: String,
    /// Secondary symmetric key, base64.
    pub secondary_key: String,
    /// `enabled` or `disabled`.
    pub status: String,
    /// Set at creation; distinguishes re-created identities.
    pub generation_id: String,
    /// Bumped on every change.
    pub etag: u64,
    /// Creation time, ms since 1970.
    pub created_ms: u64,
}

/// A twin: tags and the two sections.
#[derive(Clone, Debug, PartialEq)]
pub struct TwinRecord {
    /// Tags (service only).
    pub tags: Value,
    /// Desired properties.
    pub desired: TwinSection,
    /// Reported properties.
    pub reported: TwinSection,
    /// Twin version: bumped on every change of tags, desired or reported.
    pub version: u64,
}

/// A queued cloud-to-device message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct C2dRecord {
    /// Queue order.
    pub seq: i64,
    /// Target device.
    pub device_id: String,
    /// The property bag, percent-encoded as sent on the wire.
    pub props: String,
    /// The body.
    pub body: Vec<u8>,
    /// Expiry, ms since 1970.
    pub expiry_ms: u64,
    /// Locked (delivered, awaiting PUBACK) until, ms since 1970; 0 = not locked.
    pub lock_until_ms: u64,
    /// How many times it was delivered.
    pub delivery_count: u32,
}

/// A stored device-to-cloud message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EventRecord {
    /// Order of arrival.
    pub seq: i64,
    /// Sending device.
    pub device_id: String,
    /// Sending module.
    pub module_id: Option<String>,
    /// Properties: system, application and the hub's stamps, as a JSON object.
    pub properties: Value,
    /// The body as text if it is UTF-8, else null (see `body_base64`).
    pub body: Option<String>,
    /// The body, base64.
    pub body_base64: String,
    /// When the hub enqueued it, ISO-8601.
    pub enqueued_time: String,
}

impl EventRecord {
    /// A stored message as the REST API shows it.
    pub fn new(
        seq: i64,
        device: &str,
        module: Option<&str>,
        properties: Value,
        body: Vec<u8>,
        enqueued_time: String,
    ) -> EventRecord {
        use base64::Engine;
        EventRecord {
            seq,
            device_id: device.to_string(),
            module_id: module.map(str::to_string),
            properties,
            body_base64: base64::engine::general_purpose::STANDARD.encode(&body),
            body: String::from_utf8(body).ok(),
            enqueued_time,
        }
    }
}

/// The SQLite store.
pub struct Store {
    db: Connection,
    retention: Retention,
    /// Per device: messages stored since its last per-device prune, and how many of its
    /// messages the table holds (counted once, then kept up to date; forgotten after a
    /// rollback, to be counted again).
    since_prune: std::cell::RefCell<std::collections::HashMap<String, Kept>>,
    /// The last event sequence number handed out, or one above it (sequence numbers only
    /// grow): whether the next message takes the total past the retention.
    last_seq: std::cell::Cell<i64>,
    /// Copies the write-ahead log into the database file beside the writer (file stores).
    _checkpointer: Option<Checkpointer>,
}

/// A thread with its own connection that checkpoints the WAL (copies its pages back into
/// the database file) every 100 ms, without blocking writers (`PASSIVE`). SQLite's
/// automatic checkpoint runs inside the commit that crosses its threshold, on the hub's
/// lock: a tenth of devhub's time under a telemetry load. The automatic one stays, at a
/// higher threshold, to finish each round (only what this thread has not copied yet) and
/// let the log start over.
struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Option<Checkpointer> {
        let db = Connection::open(path).ok()?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("devhub-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(std::time::Duration::from_millis(100))
                {
                    // Busy or failed: the next round, or the automatic one, does it.
                    let _ = db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .ok()?;
        Some(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A device's telemetry bookkeeping (see `Store::since_prune`).
#[derive(Default)]
struct Kept {
    since_prune: u32,
    stored: Option<i64>,
}

/// How much telemetry is kept: the oldest is dropped first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Messages kept per device (checked every [`PRUNE_EVERY`] messages of that device,
    /// so a device may briefly hold up to `PRUNE_EVERY - 1` more).
    pub per_device: u32,
    /// Messages kept in all (by sequence number, so never more than this).
    pub total: u32,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            per_device: 10_000,
            total: 100_000,
        }
    }
}

/// A device's old messages are pruned once per this many of its new ones.
pub const PRUNE_EVERY: u32 = 64;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    device_id TEXT NOT NULL, module_id TEXT NOT NULL DEFAULT '',
    primary_key TEXT NOT NULL, secondary_key TEXT NOT NULL, status TEXT NOT NULL,
    generation_id TEXT NOT NULL, etag INTEGER NOT NULL, created_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, module_id));
CREATE TABLE IF NOT EXISTS twins (
    device_id TEXT NOT NULL, module_id TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL, desired TEXT NOT NULL, reported TEXT NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (device_id, module_id));
CREATE TABLE IF NOT EXISTS c2d (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, props TEXT NOT NULL,
    body BLOB NOT NULL, expiry_ms INTEGER NOT NULL, lock_until_ms INTEGER NOT NULL DEFAULT 0,
    delivery_count INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS c2d_device ON c2d (device_id, seq);
CREATE TABLE IF NOT EXISTS sessions (client_id TEXT PRIMARY KEY, subscriptions TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, module_id TEXT,
    properties TEXT NOT NULL, body BLOB NOT NULL, enqueued_time TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_device ON events (device_id, seq);
";

fn section_to_text(s: &TwinSection) -> String {
    s.to_json(true).to_string()
}

fn section_from_text(t: &str) -> Result<TwinSection, StoreError> {
    let v: Value = serde_json::from_str(t).map_err(|e| {
        StoreError::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })?;
    TwinSection::from_json(&v).map_err(|e| {
        StoreError::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        // A 16 MiB page cache (SQLite's default is 2 MB): under a telemetry load the
        // events table and its index were read back from the OS for every few commits.
        db.pragma_update(None, "cache_size", -16384)?;
        let checkpointer = Checkpointer::start(path);
        if checkpointer.is_some() {
            // 16 MiB of log (SQLite's default is 4 MB) before the writer checkpoints.
            db.pragma_update(None, "wal_autocheckpoint", 4096)?;
        }
        let mut store = Store::init(db)?;
        store._checkpointer = checkpointer;
        Ok(store)
    }

    /// Runs one statement through the prepared-statement cache.
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> Result<usize, StoreError> {
        self.db.prepare_cached(sql)?.execute(params)
    }

    /// A database in memory, gone when devhub stops.
    pub fn in_memory() -> Result<Store, StoreError> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(db: Connection) -> Result<Store, StoreError> {
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        // Statements are parsed once and kept (parsing was a tenth of devhub's time under
        // a telemetry load).
        db.set_prepared_statement_cache_capacity(64);
        // AUTOINCREMENT keeps the highest number ever given in sqlite_sequence.
        let last_seq = db
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        Ok(Store {
            db,
            retention: Retention::default(),
            since_prune: Default::default(),
            last_seq: std::cell::Cell::new(last_seq),
            _checkpointer: None,
        })
    }

    /// A setting.
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.db
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()
    }

    /// Sets a setting.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }

    fn identity_from_row(r: &rusqlite::Row) -> rusqlite::Result<IdentityRecord> {
        let module: String = r.get(1)?;
        Ok(IdentityRecord {
            device_id: r.get(0)?,
            module_id: (!module.is_empty()).then_some(module),
            primary_key: r.get(2)?,
            secondary_key: r.get(3)?,
            status: r.get(4)?,
            generation_id: r.get(5)?,
            etag: r.get::<_, i64>(6)? as u64,
            created_ms: r.get::<_, i64>(7)? as u64,
        })
    }

    /// A device (`module = None`) or module identity.
    pub fn identity(
        &self,
        device: &str,
        module: Option<&str>,
    ) -> Result<Option<IdentityRecord>, StoreError> {
        self.db.prepare_cached("SELECT device_id, module_id, primary_key, secondary_key, status, generation_id, etag, created_ms
                 FROM identities WHERE device_id = ?1 AND module_id = ?2")?.query_row(
                params![device, module.unwrap_or("")],
                Store::identity_from_row,
            )
            .optional()
    }

    /// Devices (not modules), in id order.
    pub fn devices(&self) -> Result<Vec<IdentityRecord>, StoreError> {
        self.list("WHERE module_id = '' ORDER BY device_id", params![])
    }

    /// The modules of a device, in id order.
    pub fn modules(&self, device: &str) -> Result<Vec<IdentityRecord>, StoreError> {
        self.list(
            "WHERE device_id = ?1 AND module_id != '' ORDER BY module_id",
            params![device],
        )
    }

    fn list(
        &self,
        clause: &str,
        p: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<IdentityRecord>, StoreError> {
        let mut st = self.db.prepare_cached(&format!(
            "SELECT device_id, module_id, primary_key, secondary_key, status, generation_id, etag, created_ms
             FROM identities {clause}"
        ))?;
        let rows = st.query_map(p, Store::identity_from_row)?;
        rows.collect()
    }

    /// Creates or replaces an identity, and creates its twin if it has none.
    pub fn put_identity(
        &mut self,
        rec: &IdentityRecord,
        twin_if_new: &TwinRecord,
    ) -> Result<(), StoreError> {
        // A savepoint, not a transaction: it nests inside a batch (see `begin_batch`).
        let tx = self.db.savepoint()?;
        let module = rec.module_id.as_deref().unwrap_or("");
        tx.execute(
            "INSERT INTO identities (device_id, module_id, primary_key, secondary_key, status, generation_id, etag, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(device_id, module_id) DO UPDATE SET primary_key = excluded.primary_key,
               secondary_key = excluded.secondary_key, status = excluded.status, etag = excluded.etag",
            params![
                rec.device_id,
                module,
                rec.primary_key,
                rec.secondary_key,
                rec.status,
                rec.generation_id,
                rec.etag as i64,
                rec.created_ms as i64
            ],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO twins (device_id, module_id, tags, desired, reported, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                rec.device_id,
                module,
                twin_if_new.tags.to_string(),
                section_to_text(&twin_if_new.desired),
                section_to_text(&twin_if_new.reported),
                twin_if_new.version as i64
            ],
        )?;
        tx.commit()
    }

    /// Deletes an identity with its twin; a device also loses its modules, C2D queue and
    /// sessions. Returns whether it existed.
    pub fn delete_identity(
        &mut self,
        device: &str,
        module: Option<&str>,
    ) -> Result<bool, StoreError> {
        let tx = self.db.savepoint()?;
        let n = match module {
            Some(m) => {
                tx.execute(
                    "DELETE FROM twins WHERE device_id = ?1 AND module_id = ?2",
                    params![device, m],
                )?;
                tx.execute(
                    "DELETE FROM sessions WHERE client_id = ?1",
                    [format!("{device}/{m}")],
                )?;
                tx.execute(
                    "DELETE FROM identities WHERE device_id = ?1 AND module_id = ?2",
                    params![device, m],
                )?
            }
            None => {
                let existed = tx.execute(
                    "DELETE FROM identities WHERE device_id = ?1 AND module_id = ''",
                    [device],
                )?;
                // Its modules, twins, queue and sessions go with it.
                tx.execute("DELETE FROM identities WHERE device_id = ?1", [device])?;
                tx.execute("DELETE FROM twins WHERE device_id = ?1", [device])?;
                tx.execute("DELETE FROM c2d WHERE device_id = ?1", [device])?;
                // Exact matches: ids may hold `_` and `%`, which LIKE would read as patterns.
                tx.execute(
                    "DELETE FROM sessions WHERE client_id = ?1 \
                     OR substr(client_id, 1, length(?2)) = ?2",
                    params![device, format!("{device}/")],
                )?;
                existed
            }
        };
        tx.commit()?;
        Ok(n > 0)
    }

    /// A twin.
    pub fn twin(
        &self,
        device: &str,
        module: Option<&str>,
    ) -> Result<Option<TwinRecord>, StoreError> {
        let row: Option<(String, String, String, i64)> = self.db.prepare_cached("SELECT tags, desired, reported, version FROM twins WHERE device_id = ?1 AND module_id = ?2")?.query_row(
                params![device, module.unwrap_or("")],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        row.map(|(tags, desired, reported, version)| {
            Ok(TwinRecord {
                tags: serde_json::from_str(&tags)
                    .unwrap_or_else(|_| Value::Object(Default::default())),
                desired: section_from_text(&desired)?,
                reported: section_from_text(&reported)?,
                version: version as u64,
            })
        })
        .transpose()
    }

    /// Saves a twin.
    pub fn put_twin(
        &self,
        device: &str,
        module: Option<&str>,
        t: &TwinRecord,
    ) -> Result<(), StoreError> {
        self.exec(
            "UPDATE twins SET tags = ?3, desired = ?4, reported = ?5, version = ?6 WHERE device_id = ?1 AND module_id = ?2",
            params![
                device,
                module.unwrap_or(""),
                t.tags.to_string(),
                section_to_text(&t.desired),
                section_to_text(&t.reported),
                t.version as i64
            ],
        )?;
        Ok(())
    }

    /// Queues a C2D message; returns its sequence number.
    pub fn enqueue_c2d(
        &self,
        device: &str,
        props: &str,
        body: &[u8],
        expiry_ms: u64,
    ) -> Result<i64, StoreError> {
        self.exec(
            "INSERT INTO c2d (device_id, props, body, expiry_ms) VALUES (?1, ?2, ?3, ?4)",
            params![device, props, body, expiry_ms as i64],
        )?;
        Ok(self.db.last_insert_rowid())
    }

    /// Messages queued for a device, in order (expired ones are removed first).
    pub fn c2d_queue(&self, device: &str, now_ms: u64) -> Result<Vec<C2dRecord>, StoreError> {
        self.exec(
            "DELETE FROM c2d WHERE device_id = ?1 AND expiry_ms <= ?2",
            params![device, now_ms as i64],
        )?;
        let mut st = self.db.prepare_cached(
            "SELECT seq, device_id, props, body, expiry_ms, lock_until_ms, delivery_count FROM c2d
             WHERE device_id = ?1 ORDER BY seq",
        )?;
        let rows = st.query_map([device], |r| {
            Ok(C2dRecord {
                seq: r.get(0)?,
                device_id: r.get(1)?,
                props: r.get(2)?,
                body: r.get(3)?,
                expiry_ms: r.get::<_, i64>(4)? as u64,
                lock_until_ms: r.get::<_, i64>(5)? as u64,
                delivery_count: r.get::<_, i64>(6)? as u32,
            })
        })?;
        rows.collect()
    }

    /// Marks a message delivered and locked until `until_ms` (0 unlocks it).
    pub fn lock_c2d(&self, seq: i64, until_ms: u64, delivered: bool) -> Result<(), StoreError> {
        self.exec(
            "UPDATE c2d SET lock_until_ms = ?2, delivery_count = delivery_count + ?3 WHERE seq = ?1",
            params![seq, until_ms as i64, i64::from(delivered)],
        )?;
        Ok(())
    }

    /// Unlocks every message of a device (its connection ended).
    pub fn unlock_c2d(&self, device: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE c2d SET lock_until_ms = 0 WHERE device_id = ?1",
            [device],
        )?;
        Ok(())
    }

    /// Removes every message queued for a device; returns how many there were.
    pub fn purge_c2d(&self, device: &str) -> Result<usize, StoreError> {
        self.exec("DELETE FROM c2d WHERE device_id = ?1", [device])
    }

    /// Completes (removes) a message.
    pub fn complete_c2d(&self, seq: i64) -> Result<(), StoreError> {
        self.exec("DELETE FROM c2d WHERE seq = ?1", [seq])?;
        Ok(())
    }

    /// The stored subscriptions of a persistent session, if it has one.
    pub fn session(&self, client_id: &str) -> Result<Option<Vec<(String, u8)>>, StoreError> {
        let text: Option<String> = self
            .db
            .prepare_cached("SELECT subscriptions FROM sessions WHERE client_id = ?1")?
            .query_row([client_id], |r| r.get(0))
            .optional()?;
        Ok(text.map(|t| serde_json::from_str(&t).unwrap_or_default()))
    }

    /// Saves a persistent session's subscriptions.
    pub fn put_session(&self, client_id: &str, subs: &[(String, u8)]) -> Result<(), StoreError> {
        let text = serde_json::to_string(subs).unwrap_or_else(|_| "[]".into());
        self.exec(
            "INSERT INTO sessions (client_id, subscriptions) VALUES (?1, ?2)
             ON CONFLICT(client_id) DO UPDATE SET subscriptions = excluded.subscriptions",
            [client_id, &text],
        )?;
        Ok(())
    }

    /// Forgets a session (CleanSession 1).
    pub fn delete_session(&self, client_id: &str) -> Result<(), StoreError> {
        self.exec("DELETE FROM sessions WHERE client_id = ?1", [client_id])?;
        Ok(())
    }

    /// Stores a telemetry message (`properties`: its JSON text); returns its sequence
    /// number.
    pub fn add_event(
        &self,
        device: &str,
        module: Option<&str>,
        properties: &str,
        body: &[u8],
        enqueued_time: &str,
    ) -> Result<i64, StoreError> {
        // Per device: every PRUNE_EVERY of its messages, drop all but its newest.
        let prune = {
            let mut kept = self.since_prune.borrow_mut();
            let k = match kept.get_mut(device) {
                Some(k) => k,
                None => kept.entry(device.to_string()).or_default(),
            };
            k.since_prune += 1;
            let due = k.since_prune >= PRUNE_EVERY;
            if due {
                k.since_prune = 0;
            }
            due
        };
        // In all: sequence numbers only grow, so keeping the newest `total` numbers is one
        // indexed range delete, due once the numbers pass `total`.
        let total = i64::from(self.retention.total);
        let store = || -> Result<i64, StoreError> {
            self.exec(
                "INSERT INTO events (device_id, module_id, properties, body, enqueued_time) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![device, module, properties, body, enqueued_time],
            )?;
            let seq = self.db.last_insert_rowid();
            self.last_seq.set(seq);
            self.count_stored(device, 1);
            if seq > total {
                let mut gone = self
                    .db
                    .prepare_cached("DELETE FROM events WHERE seq <= ?1 RETURNING device_id")?;
                let mut rows = gone.query([seq - total])?;
                while let Some(row) = rows.next()? {
                    self.count_stored(&row.get::<_, String>(0)?, -1);
                }
            }
            if prune {
                self.prune(device)?;
            }
            Ok(seq)
        };
        // With a delete due, the insert and the deletes commit together (one set of file
        // locks, one WAL commit), or with the rest of the batch they are part of
        // (`begin_batch`). Without, the insert is one statement, whole or not at all, and
        // a savepoint around it was two more statements a message.
        let r = if prune || self.last_seq.get() >= total {
            self.in_savepoint(store)
        } else {
            store()
        };
        if r.is_err() {
            self.forget_counts();
        }
        r
    }

    /// Adds `by` to the number of `device`'s messages held, if it is known.
    fn count_stored(&self, device: &str, by: i64) {
        if let Some(Kept {
            stored: Some(n), ..
        }) = self.since_prune.borrow_mut().get_mut(device)
        {
            *n += by;
        }
    }

    /// Forgets the counts of messages held (after a rollback): each is counted again
    /// when next needed.
    fn forget_counts(&self) {
        for k in self.since_prune.borrow_mut().values_mut() {
            k.stored = None;
        }
    }

    /// Drops all but `device`'s newest `per_device` messages. With the count known, the
    /// delete walks only the rows it drops: finding the cut by skipping the newest
    /// `per_device` rows walked them all, every [`PRUNE_EVERY`] messages.
    fn prune(&self, device: &str) -> Result<(), StoreError> {
        let known = self.since_prune.borrow().get(device).and_then(|k| k.stored);
        let stored = match known {
            Some(n) => n,
            None => self
                .db
                .prepare_cached("SELECT COUNT(*) FROM events WHERE device_id = ?1")?
                .query_row([device], |r| r.get(0))?,
        };
        let excess = stored - i64::from(self.retention.per_device);
        if excess > 0 {
            self.exec(
                "DELETE FROM events WHERE seq IN (
                     SELECT seq FROM events WHERE device_id = ?1 ORDER BY seq LIMIT ?2)",
                params![device, excess],
            )?;
        }
        if let Some(k) = self.since_prune.borrow_mut().get_mut(device) {
            k.stored = Some(stored - excess.max(0));
        }
        Ok(())
    }

    /// Runs `f` inside a savepoint: what it writes stays if it succeeds and is undone if it
    /// fails. A savepoint nests inside a batch, or commits by itself outside one.
    fn in_savepoint<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.exec("SAVEPOINT step", [])?;
        match f() {
            Ok(v) => {
                self.exec("RELEASE step", [])?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.exec("ROLLBACK TO step", []);
                let _ = self.exec("RELEASE step", []);
                Err(e)
            }
        }
    }

    /// Starts a batch: what is written until [`Store::commit_batch`] commits at once, in
    /// one transaction (one WAL commit for many messages). Savepoints inside it nest.
    pub fn begin_batch(&self) -> Result<(), StoreError> {
        self.exec("SAVEPOINT batch", [])?;
        Ok(())
    }

    /// Commits the batch.
    pub fn commit_batch(&self) -> Result<(), StoreError> {
        self.exec("RELEASE batch", [])?;
        Ok(())
    }

    /// Undoes the batch (after a failed commit).
    pub fn rollback_batch(&self) {
        let _ = self.exec("ROLLBACK TO batch", []);
        let _ = self.exec("RELEASE batch", []);
        self.forget_counts();
    }

    /// Sets how much telemetry is kept (applied from the next message on).
    pub fn set_retention(&mut self, r: Retention) {
        self.retention = r;
    }

    /// Telemetry after `after` (optionally of one device), oldest first, at most `limit`.
    pub fn events(
        &self,
        device: Option<&str>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let mut st = self.db.prepare_cached(
            "SELECT seq, device_id, module_id, properties, body, enqueued_time FROM events
             WHERE seq > ?1 AND (?2 IS NULL OR device_id = ?2) ORDER BY seq LIMIT ?3",
        )?;
        let rows = st.query_map(params![after, device, limit], |r| {
            let props: String = r.get(3)?;
            Ok(EventRecord::new(
                r.get(0)?,
                &r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?.as_deref(),
                serde_json::from_str(&props).unwrap_or(Value::Null),
                r.get(4)?,
                r.get(5)?,
            ))
        })?;
        rows.collect()
    }
}
