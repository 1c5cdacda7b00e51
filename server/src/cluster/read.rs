//! Reading a blob from whichever replica is healthy: the local one when this node
//! holds it, otherwise a peer's. Each source verifies block checksums; when one
//! fails — missing, corrupt, or its node gone mid-stream — reading resumes from
//! the next replica at the same offset, so the client sees one intact stream.
//! A bad local replica is quarantined on the spot and repaired by the healer.

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::DataPlane;

type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

impl DataPlane {
    /// Streams a verified range of this node's own replica. A replica that fails
    /// verification is quarantined; the error is still returned.
    pub(crate) fn local_stream(
        &self,
        id: &str,
        range: Range<u64>,
    ) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static + use<> {
        let plane = self.clone();
        let blob = id.to_owned();
        let local = self.local().clone();
        let opened = async move {
            let reader = tokio::task::spawn_blocking(move || local.open_blob(&blob))
                .await
                .map_err(io::Error::other)??;
            Ok::<_, io::Error>(reader.stream_range(range))
        };
        let id = id.to_owned();
        futures::stream::once(opened)
            .try_flatten()
            .then(move |item| {
                let plane = plane.clone();
                let id = id.clone();
                async move {
                    if let Err(e) = &item
                        && e.kind() == io::ErrorKind::InvalidData
                    {
                        plane.quarantine(&id).await;
                    }
                    item
                }
            })
    }

    /// Streams bytes `range` of blob `id` from any healthy replica (or, for a
    /// small blob, from the metadata store).
    pub fn stream(
        &self,
        id: &str,
        range: Range<u64>,
    ) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static + use<> {
        use futures::future::Either;
        if crate::meta::is_inline(id) {
            return Either::Left(Either::Left(self.inline_stream(id, range)));
        }
        if crate::meta::is_erasure(id) {
            return Either::Left(Either::Right(self.erasure_stream(id, range)));
        }
        let state = Failover {
            plane: self.clone(),
            id: id.to_owned(),
            pos: range.start,
            end: range.end,
            current: None,
            tried_local: false,
            remotes: None,
            last_error: None,
            finished: range.start >= range.end,
        };
        Either::Right(futures::stream::unfold(state, |mut state| async move {
            let item = state.next_chunk().await?;
            Some((item, state))
        }))
    }

    fn inline_stream(
        &self,
        id: &str,
        range: Range<u64>,
    ) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static + use<> {
        let meta = self.meta().clone();
        let id = id.to_owned();
        futures::stream::once(async move {
            let data = meta
                .inline_blob(&id)
                .await
                .map_err(|e| super::unreachable(format!("metadata store: {e}")))?
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("inline blob {id} is gone"))
                })?;
            let end = (range.end.min(data.len() as u64)) as usize;
            let start = (range.start as usize).min(end);
            Ok(Bytes::from(data).slice(start..end))
        })
        .filter(|chunk| futures::future::ready(!matches!(chunk, Ok(c) if c.is_empty())))
    }
}

use futures::TryStreamExt as _;

struct Failover {
    plane: DataPlane,
    id: String,
    pos: u64,
    end: u64,
    current: Option<ByteStream>,
    tried_local: bool,
    /// Peers recorded as holding the blob, loaded when first needed.
    remotes: Option<VecDeque<(String, String)>>,
    last_error: Option<io::Error>,
    finished: bool,
}

impl Failover {
    async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            if self.finished {
                return None;
            }
            if self.current.is_none() {
                match self.open_next().await {
                    Ok(Some(stream)) => self.current = Some(stream),
                    Ok(None) => {
                        self.finished = true;
                        let err = self.last_error.take().unwrap_or_else(|| {
                            io::Error::new(
                                io::ErrorKind::NotFound,
                                "no replica of the blob is reachable",
                            )
                        });
                        tracing::error!(blob = self.id, error = %err, "no replica could serve a read");
                        return Some(Err(err));
                    }
                    Err(e) => {
                        self.finished = true;
                        return Some(Err(e));
                    }
                }
            }
            let stream = self.current.as_mut()?;
            match stream.next().await {
                Some(Ok(chunk)) => {
                    let room = self.end - self.pos;
                    let chunk = if chunk.len() as u64 > room {
                        chunk.slice(..room as usize)
                    } else {
                        chunk
                    };
                    self.pos += chunk.len() as u64;
                    if self.pos >= self.end {
                        self.finished = true;
                    }
                    return Some(Ok(chunk));
                }
                Some(Err(e)) => {
                    tracing::warn!(blob = self.id, offset = self.pos, error = %e, "replica failed mid-read; trying another");
                    self.last_error = Some(e);
                    self.current = None;
                }
                None => {
                    // A source that ends early is as bad as one that fails.
                    self.last_error = Some(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "a replica ended early",
                    ));
                    self.current = None;
                }
            }
        }
    }

    /// The next source to try, positioned at `pos`; `None` when none is left.
    async fn open_next(&mut self) -> io::Result<Option<ByteStream>> {
        let range = self.pos..self.end;
        if !self.tried_local {
            self.tried_local = true;
            if self.plane.local().contains(&self.id) {
                return Ok(Some(Box::pin(self.plane.local_stream(&self.id, range))));
            }
        }
        if self.remotes.is_none() {
            let holders = self
                .plane
                .meta()
                .replicas_of(&self.id)
                .await
                .map_err(|e| super::unreachable(format!("metadata store: {e}")))?;
            let view = self.plane.view_knowing(&holders).await;
            let dead_after = self.plane.config().dead_after;
            let mut remotes: Vec<(super::Liveness, String, String)> = holders
                .into_iter()
                .filter(|n| n != self.plane.node_id())
                .filter_map(|n| {
                    let node = view.node(&n)?;
                    Some((view.liveness(node, dead_after), n, node.url.clone()))
                })
                .collect();
            // Alive peers first; dead ones last (they may still answer).
            remotes.sort_by_key(|(liveness, _, _)| *liveness as u8);
            self.remotes = Some(remotes.into_iter().map(|(_, n, u)| (n, u)).collect());
        }
        while let Some((node, url)) = self.remotes.as_mut().and_then(VecDeque::pop_front) {
            match self
                .plane
                .inner
                .peers
                .get_blob(&url, &self.id, range.clone())
                .await
            {
                Ok(stream) => return Ok(Some(Box::pin(stream))),
                Err(e) => {
                    tracing::warn!(blob = self.id, node, error = %e, "peer could not serve a replica");
                    self.last_error = Some(io::Error::other(e.to_string()));
                }
            }
        }
        Ok(None)
    }
}
