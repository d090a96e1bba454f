//! Moving folded rows in and out of the read-model tables (the live ones,
//! or a rebuild's shadows): one `SELECT … = ANY` per table to load the rows
//! a batch continues; to write them back, per table, one multi-row
//! statement (`UNNEST` of column arrays) for the rows the table does not
//! have yet and one upsert for the rest. A rebuild, whose tables nobody
//! else writes, inserts its new rows by binary `COPY` instead (most of its
//! rows: it holds them in memory and writes each once, at the end).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{OrderRow, PaymentRow, Rows, TicketRow, Written};
use crate::ProjectionError;

/// The tables rows are loaded from and written to, quoted as needed.
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    pub(crate) tickets: String,
    pub(crate) orders: String,
    pub(crate) payments: String,
}

impl Tables {
    /// The live read models, in the connection's schema.
    pub(crate) fn live() -> Self {
        Self {
            tickets: "ticket_views".to_owned(),
            orders: "order_views".to_owned(),
            payments: "payment_views".to_owned(),
        }
    }
}

/// Whether the loaded rows are locked until the transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// Live tables: other workers may write them (during a rebalance), so
    /// the rows a batch continues are locked, in key order, and stay as
    /// loaded until its upsert.
    ForUpdate,
    /// A rebuild's shadow tables, which only the rebuild writes.
    None,
}

/// How rows the tables do not have yet are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NewRows {
    /// `INSERT … ON CONFLICT DO NOTHING`: a row another worker inserted
    /// since the load is not overwritten; the batch fails as
    /// [`ProjectionError::Raced`] and is applied again on what is there.
    Insert,
    /// Binary `COPY`, for tables nobody else writes.
    Copy,
}

/// The COPY data sent at once: big enough to keep the round trips few,
/// small enough that a large flush is not held in memory twice.
const COPY_CHUNK: usize = 1 << 20;

/// How a load finds its rows: one primary-key lookup per id. (`WHERE id =
/// ANY($1)` can get a cached generic plan made while the table was small,
/// a sequential scan that then takes seconds on a large table.)
const LOOKUP: &str = "AS t JOIN unnest($1::text[]) AS wanted(id) ON t.id = wanted.id";

/// Loads the rows of the given aggregates into `rows`.
pub(crate) async fn load(
    conn: &mut PgConnection,
    tables: &Tables,
    lock: Lock,
    rows: &mut Rows,
    tickets: &[String],
    orders: &[String],
    payments: &[String],
) -> sqlx::Result<()> {
    let lock = match lock {
        Lock::ForUpdate => "ORDER BY t.id FOR UPDATE OF t",
        Lock::None => "",
    };
    if !tickets.is_empty() {
        let sql = format!(
            "SELECT t.id, title, price_cents, user_id, order_id, version, last_sequence, updated_at \
             FROM {} {LOOKUP} {lock}",
            tables.tickets
        );
        for row in sqlx::query_as::<_, TicketRow>(&sql)
            .bind(tickets)
            .fetch_all(&mut *conn)
            .await?
        {
            let row = TicketRow {
                written: Written::LOADED,
                ..row
            };
            let _ = rows.tickets.insert(row.id.clone(), row);
        }
    }
    if !orders.is_empty() {
        let sql = format!(
            "SELECT t.id, user_id, status, expires_at, ticket_id, ticket_title, ticket_price_cents, \
                    ticket_version, payment_id, version, last_sequence, placed_position, updated_at \
             FROM {} {LOOKUP} {lock}",
            tables.orders
        );
        for row in sqlx::query_as::<_, OrderRow>(&sql)
            .bind(orders)
            .fetch_all(&mut *conn)
            .await?
        {
            let row = OrderRow {
                written: Written::LOADED,
                ..row
            };
            let _ = rows.orders.insert(row.id.clone(), row);
        }
    }
    if !payments.is_empty() {
        let sql = format!(
            "SELECT t.id, order_id, user_id, amount_cents, currency, status, stripe_id, \
                    failure_reason, version, last_sequence, updated_at \
             FROM {} {LOOKUP} {lock}",
            tables.payments
        );
        for row in sqlx::query_as::<_, PaymentRow>(&sql)
            .bind(payments)
            .fetch_all(&mut *conn)
            .await?
        {
            let row = PaymentRow {
                written: Written::LOADED,
                ..row
            };
            let _ = rows.payments.insert(row.id.clone(), row);
        }
    }
    Ok(())
}

/// Writes the rows of `rows` changed since they were loaded or last
/// written (and marks them written); how many.
pub(crate) async fn flush(
    conn: &mut PgConnection,
    tables: &Tables,
    new_rows: NewRows,
    rows: &mut Rows,
) -> Result<u64, ProjectionError> {
    let mut written = 0;
    let (new, stored) = dirty(rows.tickets.values_mut());
    written += match new_rows {
        NewRows::Copy => {
            copy_rows(conn, &tables.tickets, TICKET_COLUMNS, new, ticket_tuple).await?
        }
        NewRows::Insert => {
            let new = new.into_iter().cloned().collect();
            store_tickets(conn, &tables.tickets, Conflict::Keep, new).await?
        }
    };
    written += store_tickets(conn, &tables.tickets, Conflict::Update, stored).await?;
    let (new, stored) = dirty(rows.orders.values_mut());
    written += match new_rows {
        NewRows::Copy => copy_rows(conn, &tables.orders, ORDER_COLUMNS, new, order_tuple).await?,
        NewRows::Insert => {
            let new = new.into_iter().cloned().collect();
            store_orders(conn, &tables.orders, Conflict::Keep, new).await?
        }
    };
    written += store_orders(conn, &tables.orders, Conflict::Update, stored).await?;
    let (new, stored) = dirty(rows.payments.values_mut());
    written += match new_rows {
        NewRows::Copy => {
            copy_rows(conn, &tables.payments, PAYMENT_COLUMNS, new, payment_tuple).await?
        }
        NewRows::Insert => {
            let new = new.into_iter().cloned().collect();
            store_payments(conn, &tables.payments, Conflict::Keep, new).await?
        }
    };
    written += store_payments(conn, &tables.payments, Conflict::Update, stored).await?;
    Ok(written)
}

/// What a multi-row write does with a row the table already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conflict {
    /// Overwrite it: the caller loaded (and, live, locked) that row.
    Update,
    /// Keep it, and fail the write as raced.
    Keep,
}

impl Conflict {
    /// The statement's `ON CONFLICT` clause; `set` lists the columns.
    fn clause(self, set: &str) -> String {
        match self {
            Conflict::Update => format!("ON CONFLICT (id) DO UPDATE SET {set}"),
            Conflict::Keep => "ON CONFLICT (id) DO NOTHING".to_owned(),
        }
    }

    /// Checks that every row of the write was written.
    fn check(self, table: &str, expected: usize, written: u64) -> Result<u64, ProjectionError> {
        if usize::try_from(written).ok() == Some(expected) {
            return Ok(written);
        }
        Err(ProjectionError::Raced {
            table: table.to_owned(),
            expected,
            written,
        })
    }
}

/// What [`flush`] needs of a row of any table.
trait Row: Clone {
    fn id(&self) -> &str;
    fn written(&mut self) -> &mut Written;
}

macro_rules! row {
    ($($row:ty),*) => {$(
        impl Row for $row {
            fn id(&self) -> &str {
                &self.id
            }
            fn written(&mut self) -> &mut Written {
                &mut self.written
            }
        }
    )*};
}

row!(TicketRow, OrderRow, PaymentRow);

/// The changed rows, split into those to insert (borrowed) and those to
/// update (copied, for the upsert's column arrays); all marked written, as
/// they will be once the caller's transaction commits (a failure ends the
/// run, and these rows with it).
fn dirty<'a, R: Row + 'a>(rows: impl Iterator<Item = &'a mut R>) -> (Vec<&'a R>, Vec<R>) {
    let (mut new, mut stored) = (Vec::new(), Vec::new());
    for row in rows {
        let state = row.written();
        if !state.dirty {
            continue;
        }
        let was_stored = state.stored;
        *state = Written::LOADED;
        if was_stored {
            stored.push(row.clone());
        } else {
            new.push(&*row);
        }
    }
    (new, stored)
}

const TICKET_COLUMNS: &str =
    "id, title, price_cents, user_id, order_id, version, last_sequence, updated_at";

fn ticket_tuple(out: &mut CopyBuffer, row: &TicketRow) -> sqlx::Result<()> {
    out.tuple(8);
    out.text(&row.id)?;
    out.text(&row.title)?;
    out.int8(row.price_cents);
    out.text(&row.user_id)?;
    out.optional_text(row.order_id.as_deref())?;
    out.int8(row.version);
    out.int8(row.last_sequence);
    out.timestamptz(&row.updated_at)
}

const ORDER_COLUMNS: &str = "id, user_id, status, expires_at, ticket_id, ticket_title, \
     ticket_price_cents, ticket_version, payment_id, version, last_sequence, placed_position, \
     updated_at";

fn order_tuple(out: &mut CopyBuffer, row: &OrderRow) -> sqlx::Result<()> {
    out.tuple(13);
    out.text(&row.id)?;
    out.text(&row.user_id)?;
    out.text(&row.status)?;
    out.timestamptz(&row.expires_at)?;
    out.text(&row.ticket_id)?;
    out.text(&row.ticket_title)?;
    out.int8(row.ticket_price_cents);
    out.int8(row.ticket_version);
    out.optional_text(row.payment_id.as_deref())?;
    out.int8(row.version);
    out.int8(row.last_sequence);
    out.int8(row.placed_position);
    out.timestamptz(&row.updated_at)
}

const PAYMENT_COLUMNS: &str = "id, order_id, user_id, amount_cents, currency, status, stripe_id, \
     failure_reason, version, last_sequence, updated_at";

fn payment_tuple(out: &mut CopyBuffer, row: &PaymentRow) -> sqlx::Result<()> {
    out.tuple(11);
    out.text(&row.id)?;
    out.text(&row.order_id)?;
    out.text(&row.user_id)?;
    out.int8(row.amount_cents);
    out.text(&row.currency)?;
    out.text(&row.status)?;
    out.optional_text(row.stripe_id.as_deref())?;
    out.optional_text(row.failure_reason.as_deref())?;
    out.int8(row.version);
    out.int8(row.last_sequence);
    out.timestamptz(&row.updated_at)
}

/// Inserts `rows` into `table` with one binary `COPY`; how many. In key
/// order: the primary key's index then grows at its end rather than at
/// random pages, which halves the time.
async fn copy_rows<R: Row>(
    conn: &mut PgConnection,
    table: &str,
    columns: &str,
    mut rows: Vec<&R>,
    tuple: fn(&mut CopyBuffer, &R) -> sqlx::Result<()>,
) -> sqlx::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    rows.sort_unstable_by(|a, b| a.id().cmp(b.id()));
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {table} ({columns}) FROM STDIN WITH (FORMAT binary)"
        ))
        .await?;
    let mut out = CopyBuffer::new();
    for row in &rows {
        if let Err(error) = tuple(&mut out, row) {
            let _ = copy.abort("a row could not be encoded").await;
            return Err(error);
        }
        if out.bytes.len() >= COPY_CHUNK {
            let _ = copy.send(std::mem::take(&mut out.bytes)).await?;
        }
    }
    out.end();
    let _ = copy.send(out.bytes).await?;
    let copied = copy.finish().await?;
    Ok(copied)
}

/// PostgreSQL's binary COPY format (header, then per tuple its field count
/// and each field's length and bytes, then the trailer), for the column
/// types of the read models.
struct CopyBuffer {
    bytes: Vec<u8>,
}

impl CopyBuffer {
    fn new() -> Self {
        let mut bytes = Vec::with_capacity(COPY_CHUNK + 4096);
        bytes.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        bytes.extend_from_slice(&0_i32.to_be_bytes()); // flags
        bytes.extend_from_slice(&0_i32.to_be_bytes()); // header extension
        Self { bytes }
    }

    fn tuple(&mut self, fields: i16) {
        self.bytes.extend_from_slice(&fields.to_be_bytes());
    }

    fn text(&mut self, value: &str) -> sqlx::Result<()> {
        let length = i32::try_from(value.len())
            .map_err(|_| sqlx::Error::Encode("a text value over 2 GiB".into()))?;
        self.bytes.extend_from_slice(&length.to_be_bytes());
        self.bytes.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn optional_text(&mut self, value: Option<&str>) -> sqlx::Result<()> {
        match value {
            Some(value) => self.text(value),
            None => {
                self.bytes.extend_from_slice(&(-1_i32).to_be_bytes());
                Ok(())
            }
        }
    }

    fn int8(&mut self, value: i64) {
        self.bytes.extend_from_slice(&8_i32.to_be_bytes());
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    /// Microseconds since 2000-01-01 UTC, computed as sqlx encodes a bound
    /// `DateTime` (so sub-microsecond digits go the same way as in the
    /// live projector's statements).
    fn timestamptz(&mut self, value: &DateTime<Utc>) -> sqlx::Result<()> {
        let micros = (*value - postgres_epoch())
            .num_microseconds()
            .ok_or_else(|| sqlx::Error::Encode(format!("{value} is out of range").into()))?;
        self.int8(micros);
        Ok(())
    }

    fn end(&mut self) {
        self.bytes.extend_from_slice(&(-1_i16).to_be_bytes());
    }
}

fn postgres_epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(946_684_800, 0).unwrap_or_default()
}

async fn store_tickets(
    conn: &mut PgConnection,
    table: &str,
    conflict: Conflict,
    rows: Vec<TicketRow>,
) -> Result<u64, ProjectionError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let n = rows.len();
    let (mut id, mut title, mut price, mut user, mut order) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut version, mut last, mut at) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for row in rows {
        id.push(row.id);
        title.push(row.title);
        price.push(row.price_cents);
        user.push(row.user_id);
        order.push(row.order_id);
        version.push(row.version);
        last.push(row.last_sequence);
        at.push(row.updated_at);
    }
    let sql = format!(
        "INSERT INTO {} (id, title, price_cents, user_id, order_id, version, last_sequence, updated_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
                              $6::bigint[], $7::bigint[], $8::timestamptz[]) \
         {}",
        table,
        conflict.clause(
            "title = EXCLUDED.title, price_cents = EXCLUDED.price_cents, \
             user_id = EXCLUDED.user_id, order_id = EXCLUDED.order_id, \
             version = EXCLUDED.version, last_sequence = EXCLUDED.last_sequence, \
             updated_at = EXCLUDED.updated_at"
        )
    );
    let result = sqlx::query(&sql)
        .bind(id)
        .bind(title)
        .bind(price)
        .bind(user)
        .bind(order)
        .bind(version)
        .bind(last)
        .bind(at)
        .execute(conn)
        .await?;
    conflict.check(table, n, result.rows_affected())
}

async fn store_orders(
    conn: &mut PgConnection,
    table: &str,
    conflict: Conflict,
    rows: Vec<OrderRow>,
) -> Result<u64, ProjectionError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let n = rows.len();
    let mut id = Vec::with_capacity(n);
    let mut user = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut expires = Vec::with_capacity(n);
    let mut ticket = Vec::with_capacity(n);
    let mut title = Vec::with_capacity(n);
    let mut price = Vec::with_capacity(n);
    let mut ticket_version = Vec::with_capacity(n);
    let mut payment = Vec::with_capacity(n);
    let mut version = Vec::with_capacity(n);
    let mut last = Vec::with_capacity(n);
    let mut placed = Vec::with_capacity(n);
    let mut at = Vec::with_capacity(n);
    for row in rows {
        id.push(row.id);
        user.push(row.user_id);
        status.push(row.status);
        expires.push(row.expires_at);
        ticket.push(row.ticket_id);
        title.push(row.ticket_title);
        price.push(row.ticket_price_cents);
        ticket_version.push(row.ticket_version);
        payment.push(row.payment_id);
        version.push(row.version);
        last.push(row.last_sequence);
        placed.push(row.placed_position);
        at.push(row.updated_at);
    }
    let sql = format!(
        "INSERT INTO {} (id, user_id, status, expires_at, ticket_id, ticket_title, \
                         ticket_price_cents, ticket_version, payment_id, version, last_sequence, \
                         placed_position, updated_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], \
                              $6::text[], $7::bigint[], $8::bigint[], $9::text[], $10::bigint[], \
                              $11::bigint[], $12::bigint[], $13::timestamptz[]) \
         {}",
        table,
        conflict.clause(
            "user_id = EXCLUDED.user_id, status = EXCLUDED.status, \
             expires_at = EXCLUDED.expires_at, ticket_id = EXCLUDED.ticket_id, \
             ticket_title = EXCLUDED.ticket_title, ticket_price_cents = EXCLUDED.ticket_price_cents, \
             ticket_version = EXCLUDED.ticket_version, payment_id = EXCLUDED.payment_id, \
             version = EXCLUDED.version, last_sequence = EXCLUDED.last_sequence, \
             placed_position = EXCLUDED.placed_position, updated_at = EXCLUDED.updated_at"
        )
    );
    let result = sqlx::query(&sql)
        .bind(id)
        .bind(user)
        .bind(status)
        .bind(expires)
        .bind(ticket)
        .bind(title)
        .bind(price)
        .bind(ticket_version)
        .bind(payment)
        .bind(version)
        .bind(last)
        .bind(placed)
        .bind(at)
        .execute(conn)
        .await?;
    conflict.check(table, n, result.rows_affected())
}

async fn store_payments(
    conn: &mut PgConnection,
    table: &str,
    conflict: Conflict,
    rows: Vec<PaymentRow>,
) -> Result<u64, ProjectionError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let n = rows.len();
    let mut id = Vec::with_capacity(n);
    let mut order = Vec::with_capacity(n);
    let mut user = Vec::with_capacity(n);
    let mut amount = Vec::with_capacity(n);
    let mut currency = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut stripe = Vec::with_capacity(n);
    let mut reason = Vec::with_capacity(n);
    let mut version = Vec::with_capacity(n);
    let mut last = Vec::with_capacity(n);
    let mut at = Vec::with_capacity(n);
    for row in rows {
        id.push(row.id);
        order.push(row.order_id);
        user.push(row.user_id);
        amount.push(row.amount_cents);
        currency.push(row.currency);
        status.push(row.status);
        stripe.push(row.stripe_id);
        reason.push(row.failure_reason);
        version.push(row.version);
        last.push(row.last_sequence);
        at.push(row.updated_at);
    }
    let sql = format!(
        "INSERT INTO {} (id, order_id, user_id, amount_cents, currency, status, stripe_id, \
                         failure_reason, version, last_sequence, updated_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], \
                              $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], \
                              $11::timestamptz[]) \
         {}",
        table,
        conflict.clause(
            "order_id = EXCLUDED.order_id, user_id = EXCLUDED.user_id, \
             amount_cents = EXCLUDED.amount_cents, currency = EXCLUDED.currency, \
             status = EXCLUDED.status, stripe_id = EXCLUDED.stripe_id, \
             failure_reason = EXCLUDED.failure_reason, version = EXCLUDED.version, \
             last_sequence = EXCLUDED.last_sequence, updated_at = EXCLUDED.updated_at"
        )
    );
    let result = sqlx::query(&sql)
        .bind(id)
        .bind(order)
        .bind(user)
        .bind(amount)
        .bind(currency)
        .bind(status)
        .bind(stripe)
        .bind(reason)
        .bind(version)
        .bind(last)
        .bind(at)
        .execute(conn)
        .await?;
    conflict.check(table, n, result.rows_affected())
}
