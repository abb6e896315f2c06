//! The Bookstore's PostgreSQL as a source of orders: the connection (libpq's conventions:
//! URIs, key=value strings, `PG*` variables, password files), one snapshot that a whole gang
//! reads, and a share of the orders streamed with `COPY ... TO STDOUT (FORMAT csv)` into the
//! same row parser as an orders file.
//!
//! Shares: with `--orders-table`, rank r reads the r-th of W equal ranges of the table's
//! pages (`ctid` ranges: a TID range scan reads only those pages, the table is scanned once
//! in all), fixed by rank 0 inside the snapshot. With `--orders-query`, every rank runs the
//! query and keeps the baskets whose key hashes to it (the query is executed W times).
//!
//! Sits above the core (it owns a tokio runtime and a network client) and below the
//! pipeline. Knows nothing of ranks' links: the gang's coordination (who exports the snapshot, who
//! imports it) is the pipeline's.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{pin_mut, SinkExt, StreamExt};
use rayon::prelude::*;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, NoTls};

use crate::gen::GenSpec;
use crate::input::{parse_chunk, BasketBy, ChunkErr, KeyMode, Layout, ParseStop, RawChunks};

/// Bytes of COPY output handed to one parser task.
const BLOCK_BYTES: usize = 4 << 20;

/// Where and what to read (`--postgres` and its companions), as given: resolved into a
/// connection on each rank, so that the password never travels.
#[derive(Debug, Clone)]
pub struct PgSource {
    /// A libpq connection URI (`postgresql://user@host:port/db?sslmode=require`) or
    /// key=value string, without a password.
    pub conn: String,
    /// A file holding the password (`--postgres-password-file`).
    pub password_file: Option<PathBuf>,
    /// The orders table (`--orders-table`).
    pub table: String,
    /// A query returning `book_id`, `customer_id` or `created_at` columns instead of the
    /// table (`--orders-query`).
    pub query: Option<String>,
    /// The books table (`id`, `title`, `author`) to store titles from (`--books-table`).
    pub books_table: Option<String>,
}

impl PgSource {
    /// What the gang's handshake compares: server, database and relation, never secrets.
    pub fn describe(&self) -> String {
        let server = resolve(self).map_or_else(|_| self.conn.clone(), |(_, s)| s);
        match &self.query {
            Some(q) => format!(
                "postgres:{server}:query:{:08x}",
                crc32fast::hash(q.as_bytes())
            ),
            None => format!("postgres:{server}:{}", self.table),
        }
    }
}

/// A PostgreSQL failure, naming the server (`user@host:port/db`), never the password.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL {server}: {msg}")]
pub struct PgError {
    /// `user@host:port/dbname`.
    pub server: String,
    /// What failed and why.
    pub msg: String,
    /// A rerun may succeed (the server was unreachable, restarted or dropped the
    /// connection): exit 75. Otherwise the input or credentials are wrong: exit 2.
    pub retriable: bool,
}

impl PgError {
    fn bad(server: &str, msg: impl Into<String>) -> PgError {
        PgError {
            server: server.into(),
            msg: msg.into(),
            retriable: false,
        }
    }

    /// Classifies a driver error: lost connections, shutdowns and unreachable servers are
    /// retriable; refused logins, missing objects and wrong types are not.
    fn of(server: &str, doing: &str, e: &tokio_postgres::Error) -> PgError {
        use std::error::Error as _;
        let retriable = match e.code() {
            Some(c) => {
                let class = &c.code()[..2];
                class == "08"
                    || class == "57"
                    || class == "53"
                    || *c == SqlState::T_R_SERIALIZATION_FAILURE
            }
            // No SQLSTATE: the connection failed or closed (retriable), or the settings are
            // wrong (a missing password, a bad TLS setup: not).
            None => {
                let text = e.to_string();
                e.is_closed()
                    || e.source().is_some_and(|s| s.is::<std::io::Error>())
                    || text.starts_with("timeout")
                    || text.starts_with("error connecting")
                    || text.starts_with("error communicating")
            }
        };
        let detail = match e.as_db_error() {
            Some(db) => {
                let mut s = db.message().to_owned();
                if let Some(h) = db.hint() {
                    s.push_str(&format!(" (hint: {h})"));
                }
                s
            }
            None => match e.source() {
                Some(src) => format!("{e}: {src}"),
                None => e.to_string(),
            },
        };
        PgError {
            server: server.into(),
            msg: format!("{doing}: {detail}"),
            retriable,
        }
    }
}

/// Checks a connection string before it is handed to other processes (`cooc submit`): it
/// must parse and must not hold a password, which would show in the manifest and the
/// process list.
pub fn check_conn(conn: &str) -> Result<(), PgError> {
    let raw = conn.trim();
    let cfg: Config = raw
        .parse()
        .map_err(|e| PgError::bad("(--postgres)", format!("not a connection string: {e}")))?;
    if cfg.get_password().is_some() {
        let host = match cfg.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        return Err(PgError::bad(
            &host,
            "the connection string holds a password, which would show in the JobSet: \
             put it in the database Secret (key `password`) instead",
        ));
    }
    Ok(())
}

/// The connection settings for `src`, with what it leaves out taken from the `PG*`
/// variables and libpq's defaults, and `user@host:port/db` to name the server by.
fn resolve(src: &PgSource) -> Result<(Config, String), PgError> {
    let raw = src.conn.trim();
    let mut cfg: Config = raw
        .parse()
        .map_err(|e| PgError::bad("(--postgres)", format!("not a connection string: {e}")))?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if cfg.get_hosts().is_empty() {
        cfg.host(env("PGHOST").unwrap_or_else(|| "localhost".into()));
    }
    if cfg.get_ports().is_empty() {
        if let Some(p) = env("PGPORT") {
            let p = p
                .parse::<u16>()
                .map_err(|_| PgError::bad("(--postgres)", format!("PGPORT {p:?} is not a port")))?;
            cfg.port(p);
        }
    }
    if cfg.get_user().is_none() {
        let user = env("PGUSER")
            .or_else(|| env("USER"))
            .unwrap_or_else(|| "postgres".into());
        cfg.user(user);
    }
    if cfg.get_dbname().is_none() {
        let db = env("PGDATABASE").unwrap_or_else(|| cfg.get_user().unwrap_or("").to_owned());
        cfg.dbname(db);
    }
    if !raw.contains("sslmode") {
        if let Some(m) = env("PGSSLMODE") {
            cfg.ssl_mode(match m.as_str() {
                "disable" | "allow" | "prefer" => SslMode::Disable,
                "require" | "verify-ca" | "verify-full" => SslMode::Require,
                _ => {
                    return Err(PgError::bad(
                        raw,
                        format!("PGSSLMODE {m:?} is not an sslmode"),
                    ))
                }
            });
        }
    }
    let host = match &cfg.get_hosts()[0] {
        Host::Tcp(h) => h.clone(),
        Host::Unix(p) => p.display().to_string(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let user = cfg.get_user().unwrap_or("").to_owned();
    let db = cfg.get_dbname().unwrap_or("").to_owned();
    let server = format!("{user}@{host}:{port}/{db}");
    if cfg.get_password().is_some() {
        return Err(PgError::bad(
            &server,
            "the connection string holds a password, which would show in the process list: \
             pass it in PGPASSWORD, a PGPASSFILE or --postgres-password-file",
        ));
    }
    let password = match &src.password_file {
        Some(p) => Some(read_password_file(p).map_err(|m| PgError::bad(&server, m))?),
        None => env("PGPASSWORD").or_else(|| pgpass(&host, port, &db, &user)),
    };
    if let Some(pw) = password {
        cfg.password(pw);
    }
    cfg.application_name("cooc")
        .connect_timeout(Duration::from_secs(10))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    Ok((cfg, server))
}

/// The first line of `--postgres-password-file` (a mounted Secret ends it with a newline
/// or not).
fn read_password_file(p: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(p)
        .map_err(|e| format!("--postgres-password-file {}: {e}", p.display()))?;
    let pw = text.lines().next().unwrap_or("").to_owned();
    if pw.is_empty() {
        return Err(format!("--postgres-password-file {}: empty", p.display()));
    }
    Ok(pw)
}

/// The password for this connection from `PGPASSFILE` (default `~/.pgpass`), libpq's
/// format: `host:port:db:user:password`, `*` matching anything, `\` escaping `:` and `\`.
fn pgpass(host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let path = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass")))?;
    let text = std::fs::read_to_string(path).ok()?;
    let port = port.to_string();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let fields = split_pgpass(line)?;
            let want = [host, port.as_str(), db, user];
            let matches = fields[..4]
                .iter()
                .zip(want)
                .all(|(f, w)| f == "*" || f == w || (w.starts_with('/') && f == "localhost"));
            matches.then(|| fields[4].clone())
        })
}

/// The five fields of a `.pgpass` line, unescaped.
fn split_pgpass(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.push(chars.next()?),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    (fields.len() == 5).then_some(fields)
}

/// One connection, with the runtime that drives it.
pub struct Session {
    rt: tokio::runtime::Runtime,
    client: Client,
    server: String,
}

/// What every rank must know to read its share: the snapshot and the statements.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReadPlan {
    /// `pg_export_snapshot()`'s id, to import.
    pub snapshot: String,
    /// `pg_current_snapshot()` as text: which transactions the rows come from.
    pub visible: String,
    /// The `SELECT` of the needed columns, without a share filter.
    select: String,
    /// How shares are cut.
    split: Split,
    /// Positions of the selected columns.
    customer: bool,
    created: bool,
    /// Key columns that are text (read as string keys, quoted by COPY).
    str_basket: bool,
    str_item: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum Split {
    /// Equal ranges of this many pages of the table (as of the snapshot).
    Pages(u64),
    /// By a hash of this SQL expression of the basket.
    Hash(String),
}

impl ReadPlan {
    /// The statement rank `rank` of `world` runs.
    pub fn share_sql(&self, rank: u32, world: u32) -> String {
        let (r, w) = (u64::from(rank), u64::from(world));
        let filter = match &self.split {
            _ if world == 1 => String::new(),
            Split::Pages(pages) => {
                let (lo, hi) = (pages * r / w, pages * (r + 1) / w);
                let mut f = Vec::new();
                if rank > 0 {
                    f.push(format!("ctid >= '({lo},0)'::tid"));
                }
                if rank + 1 < world {
                    f.push(format!("ctid < '({hi},0)'::tid"));
                }
                format!(" WHERE {}", f.join(" AND "))
            }
            Split::Hash(expr) => format!(" WHERE mod(mod(hashtext({expr}), {w}) + {w}, {w}) = {r}"),
        };
        format!("COPY ({}{filter}) TO STDOUT (FORMAT csv)", self.select)
    }

    /// How the COPY rows parse.
    pub(crate) fn layout(&self, basket_by: BasketBy, need_time: bool) -> Layout {
        let customer = self.customer.then_some(1);
        let created = self.created.then_some(1 + usize::from(self.customer));
        Layout {
            delimiter: b',',
            n_fields: 1 + usize::from(self.customer) + usize::from(self.created),
            book: 0,
            customer,
            created,
            qty: None,
            basket_by,
            need_time: need_time || matches!(basket_by, BasketBy::Window(_)),
        }
    }

    /// The key modes the column types call for.
    pub(crate) fn key_mode(&self) -> KeyMode {
        KeyMode {
            str_basket: self.str_basket,
            str_item: self.str_item,
            quoted: self.str_basket || self.str_item,
        }
    }
}

fn is_int(t: &Type) -> bool {
    [Type::INT2, Type::INT4, Type::INT8].contains(t)
}

fn is_text(t: &Type) -> bool {
    [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(t)
}

fn is_time(t: &Type) -> bool {
    [Type::TIMESTAMPTZ, Type::TIMESTAMP].contains(t)
}

impl Session {
    /// Connects to the server `src` names (TLS when `sslmode=require`, verified against
    /// the web PKI roots, or `PGSSLROOTCERT`/`sslrootcert`).
    pub fn connect(src: &PgSource) -> Result<Session, PgError> {
        let (cfg, server) = resolve(src)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PgError::bad(&server, format!("starting a runtime: {e}")))?;
        let client = rt.block_on(async {
            let connected = match cfg.get_ssl_mode() {
                SslMode::Require => {
                    let tls = tls_config(&src.conn).map_err(|m| PgError::bad(&server, m))?;
                    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
                    cfg.connect(tls).await.map(|(c, conn)| {
                        tokio::spawn(conn);
                        c
                    })
                }
                _ => {
                    let mut cfg = cfg.clone();
                    cfg.ssl_mode(SslMode::Disable);
                    cfg.connect(NoTls).await.map(|(c, conn)| {
                        tokio::spawn(conn);
                        c
                    })
                }
            };
            connected.map_err(|e| PgError::of(&server, "connecting", &e))
        })?;
        Ok(Session { rt, client, server })
    }

    /// `user@host:port/db`.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn exec(&self, sql: &str, doing: &str) -> Result<(), PgError> {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .map_err(|e| PgError::of(&self.server, doing, &e))
    }

    fn begin(&self) -> Result<(), PgError> {
        self.exec(
            "SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, YMD'; \
             BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            "starting a transaction",
        )
    }

    /// Opens a read-only snapshot for the gang, exports it, and plans the read (rank 0).
    pub fn export(
        &self,
        src: &PgSource,
        basket_by: BasketBy,
        need_time: bool,
        str_keys: bool,
    ) -> Result<ReadPlan, PgError> {
        self.begin()?;
        let row = self
            .rt
            .block_on(self.client.query_one(
                "SELECT pg_export_snapshot(), pg_current_snapshot()::text",
                &[],
            ))
            .map_err(|e| PgError::of(&self.server, "exporting a snapshot", &e))?;
        let (snapshot, visible): (String, String) = (row.get(0), row.get(1));
        let mut plan = self.plan(src, basket_by, need_time)?;
        plan.snapshot = snapshot;
        plan.visible = visible;
        plan.str_item |= str_keys;
        Ok(plan)
    }

    /// Joins the snapshot rank 0 exported (every other rank).
    pub fn import(&self, plan: &ReadPlan) -> Result<(), PgError> {
        if !plan
            .snapshot
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-')
        {
            return Err(PgError::bad(&self.server, "a malformed snapshot id"));
        }
        self.begin()?;
        self.exec(
            &format!("SET TRANSACTION SNAPSHOT '{}'", plan.snapshot),
            "importing rank 0's snapshot",
        )
    }

    /// Ends the transaction.
    pub fn finish(self) {
        if let Err(e) = self.exec("COMMIT", "closing the snapshot") {
            tracing::warn!("{e}");
        }
    }

    /// The columns the read needs, checked by name and type, and how to split it.
    fn plan(
        &self,
        src: &PgSource,
        basket_by: BasketBy,
        need_time: bool,
    ) -> Result<ReadPlan, PgError> {
        let server = &self.server;
        let (from, what, split_pages) = match &src.query {
            Some(q) => (format!("({q}) AS q"), "--orders-query".to_owned(), None),
            None => {
                let row = self
                    .rt
                    .block_on(self.client.query_one(
                        "SELECT to_regclass($1)::text, \
                         pg_relation_size(to_regclass($1)) / current_setting('block_size')::int8",
                        &[&src.table],
                    ))
                    .map_err(|e| PgError::of(server, "looking up the orders table", &e))?;
                let name: Option<String> = row.get(0);
                let Some(name) = name else {
                    return Err(PgError::bad(
                        server,
                        format!(
                            "no table {:?} (--orders-table; the user needs SELECT on it)",
                            src.table
                        ),
                    ));
                };
                let pages: Option<i64> = row.get(1);
                (
                    name.clone(),
                    format!("table {name}"),
                    Some(pages.unwrap_or(0).max(0) as u64),
                )
            }
        };
        let stmt = self
            .rt
            .block_on(
                self.client
                    .prepare(&format!("SELECT * FROM {from} LIMIT 0")),
            )
            .map_err(|e| PgError::of(server, &format!("reading the columns of {what}"), &e))?;
        let col = |name: &str| stmt.columns().iter().find(|c| c.name() == name);
        let names = || {
            stmt.columns()
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let book = col("book_id").ok_or_else(|| {
            PgError::bad(
                server,
                format!("{what} has no book_id column (it has: {})", names()),
            )
        })?;
        let wrong = |c: &str, t: &Type, want: &str| {
            PgError::bad(server, format!("{what}: column {c} is {t}, not {want}"))
        };
        let book_text = is_text(book.type_());
        let book_ok = is_int(book.type_()) || (book_text && src.query.is_some());
        if !book_ok {
            return Err(wrong("book_id", book.type_(), "an integer"));
        }
        let windowed = matches!(basket_by, BasketBy::Window(_));
        let customer = match col("customer_id") {
            Some(c) if !windowed => {
                if !is_int(c.type_()) && !is_text(c.type_()) {
                    return Err(wrong("customer_id", c.type_(), "an integer or text"));
                }
                Some(c)
            }
            Some(_) => None,
            None if windowed => None,
            None => {
                return Err(PgError::bad(
                    server,
                    format!(
                        "{what} has no customer_id column: group its rows into baskets by time with --basket-window (e.g. 1h)"
                    ),
                ))
            }
        };
        let created = if need_time || windowed {
            let c = col("created_at").ok_or_else(|| {
                PgError::bad(
                    server,
                    format!(
                        "{what} has no created_at column, which --basket-window, --holdout last and --decay-half-life need (it has: {})",
                        names()
                    ),
                )
            })?;
            if !is_time(c.type_()) {
                return Err(wrong("created_at", c.type_(), "a timestamp"));
            }
            true
        } else {
            false
        };
        let mut cols = vec!["book_id"];
        if customer.is_some() {
            cols.push("customer_id");
        }
        if created {
            cols.push("created_at");
        }
        let select = format!("SELECT {} FROM {from}", cols.join(", "));
        let split = match split_pages {
            Some(p) => Split::Pages(p),
            None => Split::Hash(match basket_by {
                BasketBy::Customer => "customer_id::text".into(),
                BasketBy::Window(w) => {
                    format!("(floor(extract(epoch FROM created_at) * 1000000 / {w}))::int8::text")
                }
            }),
        };
        Ok(ReadPlan {
            snapshot: String::new(),
            visible: String::new(),
            select,
            split,
            customer: customer.is_some(),
            created,
            str_basket: customer.is_some_and(|c| is_text(c.type_())),
            str_item: book_text,
        })
    }

    /// Streams `sql` (a `COPY ... TO STDOUT`) into `tx` in blocks of whole rows; the
    /// number of rows.
    /// Blocks come from `free` (those the parsers are done with) before new ones are made,
    /// so a read holds a handful of blocks however long the table is.
    fn copy_out(
        &self,
        sql: &str,
        tx: mpsc::SyncSender<Vec<u8>>,
        free: mpsc::Receiver<Vec<u8>>,
    ) -> Result<u64, PgError> {
        let fresh = || match free.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => Vec::with_capacity(BLOCK_BYTES + (64 << 10)),
        };
        self.rt.block_on(async {
            let stream = self
                .client
                .copy_out(sql)
                .await
                .map_err(|e| PgError::of(&self.server, "reading the orders", &e))?;
            pin_mut!(stream);
            let mut block = fresh();
            let mut rows = 0u64;
            while let Some(row) = stream.next().await {
                let row = row.map_err(|e| PgError::of(&self.server, "reading the orders", &e))?;
                block.extend_from_slice(&row);
                rows += 1;
                if block.len() >= BLOCK_BYTES {
                    let full = std::mem::replace(&mut block, fresh());
                    if tx.send(full).is_err() {
                        break;
                    }
                }
            }
            if !block.is_empty() {
                let _ = tx.send(block);
            }
            Ok(rows)
        })
    }

    /// Reads this rank's share and parses it as it streams in (the parsers run on the
    /// rayon pool; at most a few blocks wait, so memory holds the parsed columns, not the
    /// text). Database failures come back as [`ParseStop::Source`].
    pub(crate) fn read(
        &self,
        sql: &str,
        lay: &Layout,
        mode: KeyMode,
        name: &str,
    ) -> Result<RawChunks, ParseStop> {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(rayon::current_num_threads() + 1);
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
        let (read, parsed) = std::thread::scope(|s| {
            let reader = s.spawn(move || self.copy_out(sql, tx, free_rx));
            let parsed: Vec<(usize, Result<_, ChunkErr>, Vec<u8>)> = rx
                .into_iter()
                .enumerate()
                .par_bridge()
                .map(|(i, block)| {
                    let out =
                        parse_chunk(&block, 0, lay, mode.str_basket, mode.str_item, mode.quoted);
                    // Keep the text of a failed block only, to quote the bad row; hand the
                    // others back to the reader.
                    let keep = if out.is_err() {
                        block
                    } else {
                        let _ = free_tx.send(block);
                        Vec::new()
                    };
                    (i, out, keep)
                })
                .collect();
            (reader.join(), parsed)
        });
        let read =
            read.unwrap_or_else(|_| Err(PgError::bad(&self.server, "the reading thread panicked")));
        if let Err(e) = read {
            return Err(ParseStop::Source {
                message: e.to_string(),
                retriable: e.retriable,
            });
        }
        let mut parsed = parsed;
        parsed.sort_unstable_by_key(|p| p.0);
        let chunks = parsed
            .into_iter()
            .map(|(i, out, text)| {
                let out = out.map_err(|e| {
                    ParseStop::of(e, |e| {
                        let start = (e.offset as usize).min(text.len());
                        let line = text[start..]
                            .split(|&b| b == b'\n')
                            .next()
                            .unwrap_or_default();
                        let line = String::from_utf8_lossy(&line[..line.len().min(200)]);
                        format!("{name}: row ({line}): {}", e.msg)
                    })
                })?;
                Ok((i as u32, text.len() as u64, out))
            })
            .collect::<Result<Vec<_>, ParseStop>>()?;
        Ok(RawChunks::from_chunks(chunks))
    }

    /// `id,title,author` of every book in `table`, as CSV with a header.
    pub fn books_csv(&self, table: &str) -> Result<Vec<u8>, PgError> {
        let name: Option<String> = self
            .rt
            .block_on(
                self.client
                    .query_one("SELECT to_regclass($1)::text", &[&table]),
            )
            .map_err(|e| PgError::of(&self.server, "looking up the books table", &e))?
            .get(0);
        let Some(name) = name else {
            return Err(PgError::bad(
                &self.server,
                format!("no table {table:?} (--books-table)"),
            ));
        };
        let sql =
            format!("COPY (SELECT id, title, author FROM {name}) TO STDOUT (FORMAT csv, HEADER)");
        let (tx, rx) = mpsc::sync_channel(4);
        let (read, blocks) = std::thread::scope(|s| {
            // No pool: every block is kept.
            let (_, none) = mpsc::channel();
            let reader = s.spawn(move || self.copy_out(&sql, tx, none));
            let blocks: Vec<Vec<u8>> = rx.into_iter().collect();
            (reader.join(), blocks)
        });
        read.unwrap_or_else(|_| Err(PgError::bad(&self.server, "the reading thread panicked")))
            .map_err(|e| PgError {
                msg: format!("{} (--books-table {name})", e.msg),
                ..e
            })?;
        Ok(blocks.concat())
    }

    /// Creates the Bookstore's schema (`books`, `orders` with `customer_id`) and loads it
    /// with COPY: `books` is CSV with a header, `orders` blocks of
    /// `id,book_id,qty,created_at,customer_id` lines. Refuses tables that hold rows.
    pub fn load_bookstore(
        &self,
        books: &[u8],
        orders: impl Iterator<Item = Vec<u8>>,
    ) -> Result<u64, PgError> {
        self.exec(
            "CREATE TABLE IF NOT EXISTS books (id SERIAL PRIMARY KEY, title TEXT, author TEXT, price NUMERIC); \
             CREATE TABLE IF NOT EXISTS orders (id SERIAL PRIMARY KEY, book_id INT, qty INT, \
                 created_at TIMESTAMPTZ, customer_id INT)",
            "creating the books and orders tables",
        )?;
        let row = self
            .rt
            .block_on(self.client.query_one(
                "SELECT (SELECT count(*) FROM (SELECT 1 FROM books LIMIT 1) b) \
                      + (SELECT count(*) FROM (SELECT 1 FROM orders LIMIT 1) o)",
                &[],
            ))
            .map_err(|e| PgError::of(&self.server, "checking the tables", &e))?;
        if row.get::<_, i64>(0) > 0 {
            return Err(PgError::bad(
                &self.server,
                "books or orders already has rows: cooc gen --postgres loads into empty tables \
                 (a new database, or TRUNCATE them first)",
            ));
        }
        self.exec("BEGIN", "starting the load")?;
        self.copy_in(
            "COPY books (id, title, author, price) FROM STDIN (FORMAT csv, HEADER)",
            std::iter::once(books.to_vec()),
        )?;
        let rows = self.copy_in(
            "COPY orders (id, book_id, qty, created_at, customer_id) FROM STDIN (FORMAT csv)",
            orders,
        )?;
        self.exec(
            "SELECT setval(pg_get_serial_sequence('books', 'id'), coalesce(max(id), 0) + 1, false) FROM books; \
             SELECT setval(pg_get_serial_sequence('orders', 'id'), coalesce(max(id), 0) + 1, false) FROM orders; \
             COMMIT; ANALYZE books; ANALYZE orders",
            "finishing the load",
        )?;
        Ok(rows)
    }

    fn copy_in(&self, sql: &str, blocks: impl Iterator<Item = Vec<u8>>) -> Result<u64, PgError> {
        let doing = format!("loading ({sql})");
        self.rt
            .block_on(async {
                let sink = self.client.copy_in::<_, bytes::Bytes>(sql).await?;
                pin_mut!(sink);
                for b in blocks {
                    sink.send(bytes::Bytes::from(b)).await?;
                }
                sink.finish().await
            })
            .map_err(|e| PgError::of(&self.server, &doing, &e))
    }
}

/// `cooc gen --postgres`: creates the Bookstore's schema in the database `db` names
/// (`books`, and `orders` with `customer_id`) and loads the dataset `spec` describes with
/// COPY, streaming; the number of order lines.
pub fn load_bookstore(spec: &GenSpec, db: &PgSource) -> anyhow::Result<u64> {
    crate::gen::check(spec)?;
    let books = crate::gen::books_csv(spec)?;
    let session = Session::connect(db)?;
    let bar = crate::progress::bar(spec.orders, "orders");
    let orders = crate::gen::order_blocks(spec).flat_map(|(bufs, done)| {
        bar.set_position(done);
        bufs
    });
    let rows = session.load_bookstore(&books, orders)?;
    bar.finish_and_clear();
    Ok(rows)
}

/// The TLS settings of `sslmode=require`: the web PKI roots, or the CA file named by
/// `sslrootcert` / `PGSSLROOTCERT`.
fn tls_config(conn: &str) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let named = conn
        .split(['&', '?', ' '])
        .find_map(|kv| kv.strip_prefix("sslrootcert="))
        .map(str::to_owned)
        .or_else(|| std::env::var("PGSSLROOTCERT").ok());
    match named {
        Some(path) => {
            let mut pem = Vec::new();
            std::fs::File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut pem))
                .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("sslrootcert {path}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(conn: &str) -> PgSource {
        PgSource {
            conn: conn.into(),
            password_file: None,
            table: "orders".into(),
            query: None,
            books_table: None,
        }
    }

    #[test]
    fn a_password_in_the_connection_string_is_refused_without_echoing_it() {
        for conn in [
            "postgresql://shop:s3cret@db:5432/bookstore",
            "host=db user=shop password=s3cret dbname=bookstore",
        ] {
            let e = resolve(&src(conn)).unwrap_err();
            assert!(!e.to_string().contains("s3cret"), "{e}");
            assert!(e.to_string().contains("shop@db:5432/bookstore"), "{e}");
            assert!(!e.retriable);
        }
    }

    #[test]
    fn pgpass_lines_match_with_wildcards_and_escapes() {
        assert_eq!(
            split_pgpass(r"db:5432:*:shop:pa\:ss\\word").unwrap(),
            ["db", "5432", "*", "shop", r"pa:ss\word"]
        );
        assert!(split_pgpass("db:5432:shop").is_none());
    }

    #[test]
    fn shares_cover_every_page_once() {
        let plan = ReadPlan {
            snapshot: String::new(),
            visible: String::new(),
            select: "SELECT book_id FROM orders".into(),
            split: Split::Pages(10),
            customer: true,
            created: false,
            str_basket: false,
            str_item: false,
        };
        assert_eq!(
            plan.share_sql(0, 1),
            "COPY (SELECT book_id FROM orders) TO STDOUT (FORMAT csv)"
        );
        assert!(plan
            .share_sql(0, 3)
            .ends_with("WHERE ctid < '(3,0)'::tid) TO STDOUT (FORMAT csv)"));
        assert!(plan
            .share_sql(1, 3)
            .contains("WHERE ctid >= '(3,0)'::tid AND ctid < '(6,0)'::tid)"));
        assert!(plan.share_sql(2, 3).contains("WHERE ctid >= '(6,0)'::tid)"));
    }
}
