//! Listing in S3 order (UTF-8 bytes) with prefix and delimiter, by index seeks only:
//! each batch starts where the previous stopped, and a common prefix is skipped in
//! one seek to the first key after it, so a page costs the same on a bucket of a
//! thousand keys or of a million.

use sqlx::any::AnyArguments;
use sqlx::query::Query;

use super::objects::{OBJECT_COLUMNS, ObjectMeta, object_from_row};
use super::{MetaResult, MetaStore};

/// What to list: keys under `prefix`, grouped at `delimiter`, after `start_after`.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Exclusive start (V1 `marker`, V2 `start-after` or continuation token).
    pub start_after: Option<Vec<u8>>,
    pub max_keys: usize,
}

#[derive(Debug, Clone)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    /// The last key or common prefix returned: where the next page starts after.
    pub last: Option<Vec<u8>>,
}

/// Where a batch starts.
#[derive(Debug, Clone)]
pub enum Cursor {
    /// At this key, inclusive.
    From(Vec<u8>),
    /// After this key (and, for uploads, after this upload id within the key).
    After(Vec<u8>, Option<String>),
}

/// A key-ordered table that can be read in batches.
#[async_trait::async_trait]
pub(super) trait Source: Sync {
    type Item: Send;
    fn key(item: &Self::Item) -> &[u8];
    fn cursor_after(item: &Self::Item) -> Cursor;
    async fn fetch(
        &self,
        from: &Cursor,
        upper: Option<&[u8]>,
        limit: usize,
    ) -> MetaResult<Vec<Self::Item>>;
}

/// The smallest byte string greater than every string starting with `prefix`
/// (`None` when there is none, i.e. the prefix is empty or all 0xFF).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn common_prefix<'k>(key: &'k [u8], prefix_len: usize, delimiter: &[u8]) -> Option<&'k [u8]> {
    if delimiter.is_empty() {
        return None;
    }
    let rest = key.get(prefix_len..)?;
    rest.windows(delimiter.len())
        .position(|w| w == delimiter)
        .map(|pos| &key[..prefix_len + pos + delimiter.len()])
}

/// Walks `source` from `start` and fills one page.
pub(super) async fn walk<S: Source>(
    source: &S,
    query: &ListQuery,
    start: Option<Cursor>,
) -> MetaResult<ListPage<S::Item>> {
    let prefix = query.prefix.as_bytes();
    let delimiter = query.delimiter.as_deref().unwrap_or("").as_bytes();
    let upper = prefix_end(prefix);
    let start_after = query.start_after.as_deref();
    let mut cursor = match start {
        Some(Cursor::After(key, id)) if key.as_slice() >= prefix => Cursor::After(key, id),
        _ => Cursor::From(prefix.to_vec()),
    };
    let mut page = ListPage {
        items: Vec::new(),
        common_prefixes: Vec::new(),
        is_truncated: false,
        last: None,
    };
    if query.max_keys == 0 {
        // AWS answers max-keys=0 with an empty page that is not truncated (a
        // truncated page without a next marker would loop clients forever).
        return Ok(page);
    }
    let mut count = 0usize;
    // With a delimiter, a batch may end at its first row (a common prefix is
    // skipped with a new seek), so batches start small and grow while rows are
    // used; without one, every fetched row is used.
    const SMALL_BATCH: usize = 8;
    let mut batch_size = if delimiter.is_empty() {
        1001
    } else {
        SMALL_BATCH
    };
    'batches: loop {
        if count == query.max_keys {
            let more = source.fetch(&cursor, upper.as_deref(), 1).await?;
            page.is_truncated = !more.is_empty();
            break;
        }
        let limit = (query.max_keys - count + 1).clamp(2, batch_size);
        let batch = source.fetch(&cursor, upper.as_deref(), limit).await?;
        let exhausted = batch.len() < limit;
        if batch.is_empty() {
            break;
        }
        for item in batch {
            if count == query.max_keys {
                page.is_truncated = true;
                break 'batches;
            }
            let key = S::key(&item);
            if let Some(cp) = common_prefix(key, prefix.len(), delimiter) {
                // A prefix at or before the start marker was returned on an
                // earlier page: skip it without emitting.
                if start_after.is_none_or(|sa| cp > sa) {
                    page.common_prefixes
                        .push(String::from_utf8_lossy(cp).into_owned());
                    page.last = Some(cp.to_vec());
                    count += 1;
                }
                match prefix_end(cp) {
                    Some(next) => cursor = Cursor::From(next),
                    None => break 'batches,
                }
                batch_size = SMALL_BATCH;
                continue 'batches;
            }
            page.last = Some(key.to_vec());
            cursor = S::cursor_after(&item);
            page.items.push(item);
            count += 1;
        }
        if exhausted {
            break;
        }
        batch_size = (batch_size * 4).min(1001);
    }
    Ok(page)
}

struct ObjectSource<'a> {
    store: &'a MetaStore,
    bucket: &'a str,
}

/// A bind value of a dynamically built query.
pub(super) enum Arg {
    Text(String),
    Bytes(Vec<u8>),
    Int(i64),
}

pub(super) fn bind_all<'q>(
    mut query: Query<'q, sqlx::Any, AnyArguments<'q>>,
    args: Vec<Arg>,
) -> Query<'q, sqlx::Any, AnyArguments<'q>> {
    for arg in args {
        query = match arg {
            Arg::Text(v) => query.bind(v),
            Arg::Bytes(v) => query.bind(v),
            Arg::Int(v) => query.bind(v),
        };
    }
    query
}

/// The WHERE clause for a key range of one bucket, and its bind values.
pub(super) fn range_clause(
    bucket: &str,
    from: &Cursor,
    upper: Option<&[u8]>,
    id_column: &str,
) -> (String, Vec<Arg>) {
    let mut args = vec![Arg::Text(bucket.to_owned())];
    let mut sql = String::from("bucket = $1");
    match from {
        Cursor::From(key) => {
            args.push(Arg::Bytes(key.clone()));
            sql.push_str(" AND key >= $2");
        }
        Cursor::After(key, None) => {
            args.push(Arg::Bytes(key.clone()));
            sql.push_str(" AND key > $2");
        }
        Cursor::After(key, Some(id)) => {
            args.push(Arg::Bytes(key.clone()));
            args.push(Arg::Text(id.clone()));
            sql.push_str(&format!(
                " AND (key > $2 OR (key = $2 AND {id_column} > $3))"
            ));
        }
    }
    if let Some(upper) = upper {
        args.push(Arg::Bytes(upper.to_vec()));
        sql.push_str(&format!(" AND key < ${}", args.len()));
    }
    (sql, args)
}

#[async_trait::async_trait]
impl Source for ObjectSource<'_> {
    type Item = ObjectMeta;

    fn key(item: &ObjectMeta) -> &[u8] {
        item.key.as_bytes()
    }

    fn cursor_after(item: &ObjectMeta) -> Cursor {
        Cursor::After(item.key.as_bytes().to_vec(), None)
    }

    async fn fetch(
        &self,
        from: &Cursor,
        upper: Option<&[u8]>,
        limit: usize,
    ) -> MetaResult<Vec<ObjectMeta>> {
        let (clause, mut args) = range_clause(self.bucket, from, upper, "key");
        args.push(Arg::Int(limit as i64));
        let sql = format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE {clause} ORDER BY key LIMIT ${}",
            args.len()
        );
        let rows = bind_all(sqlx::query(&sql), args)
            .fetch_all(&self.store.pool)
            .await?;
        rows.iter().map(object_from_row).collect()
    }
}

impl MetaStore {
    /// One page of the current objects of a bucket (ListObjects V1 and V2).
    pub async fn list_objects(
        &self,
        bucket: &str,
        query: &ListQuery,
    ) -> MetaResult<ListPage<ObjectMeta>> {
        let source = ObjectSource {
            store: self,
            bucket,
        };
        let start = query.start_after.clone().map(|k| Cursor::After(k, None));
        walk(&source, query, start).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte_and_drops_trailing_ff() {
        assert_eq!(prefix_end(b"abc"), Some(b"abd".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn common_prefix_cuts_after_first_delimiter_past_the_prefix() {
        assert_eq!(common_prefix(b"a/b/c", 0, b"/"), Some(&b"a/"[..]));
        assert_eq!(common_prefix(b"a/b/c", 2, b"/"), Some(&b"a/b/"[..]));
        assert_eq!(common_prefix(b"a/b/c", 4, b"/"), None);
        assert_eq!(common_prefix(b"a--b", 0, b"--"), Some(&b"a--"[..]));
    }
}
