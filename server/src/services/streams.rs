//! What Sync and Watch streams share: the task that feeds a stream, its heartbeats, and
//! the end of every stream when the server shuts down or the environment is deleted.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use vexil_proto::v1 as pb;

use crate::live::{Environment, Hub, Update};
use crate::metrics::Metrics;
use crate::overload::StreamSlot;

/// Messages buffered per stream before the stream's task waits for the client.
const STREAM_BUFFER: usize = 8;

pub type ResponseStream<T> = ReceiverStream<Result<T, Status>>;

/// Counts a stream in `vexil_active_streams`, and holds its place under the instance's
/// stream limits, while it lives (see `Hub::open_stream`).
pub struct StreamGuard {
    metrics: Metrics,
    kind: &'static str,
    _slot: StreamSlot,
}

impl StreamGuard {
    /// Opens a `kind` stream of SDK key `key_id`; `RESOURCE_EXHAUSTED` when the instance or
    /// the key is at its stream limit, so that a refused stream costs no work.
    pub fn open(hub: &Hub, kind: &'static str, key_id: i64) -> Result<StreamGuard, Status> {
        let slot = hub.open_stream(key_id)?;
        let metrics = hub.metrics();
        metrics.active_streams.with_label_values(&[kind]).inc();
        Ok(StreamGuard {
            metrics: metrics.clone(),
            kind,
            _slot: slot,
        })
    }
}

/// Checks the version a stream resumes from (0: from nothing).
pub fn check_resume_version(version: i64) -> Result<(), Status> {
    if version < 0 {
        return Err(Status::invalid_argument("version: must not be negative"));
    }
    Ok(())
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.metrics
            .active_streams
            .with_label_values(&[self.kind])
            .dec();
    }
}

/// What a stream does with the events of its environment.
pub trait StreamHandler: Send + 'static {
    type Message: Send + 'static;

    /// Messages for an update of the environment (none when it changes nothing for this
    /// stream). `missed` is true when updates were lost in between (the stream fell behind).
    fn on_update(
        &mut self,
        update: &Update,
    ) -> impl Future<Output = Result<Vec<Self::Message>, Status>> + Send;

    /// Messages after updates were lost: the stream must catch up with `environment`.
    fn on_missed(
        &mut self,
        environment: &Environment,
    ) -> impl Future<Output = Result<Vec<Self::Message>, Status>> + Send;

    /// The heartbeat message.
    fn heartbeat(&self) -> Self::Message;
}

/// The server's clock as a timestamp.
pub fn now_timestamp() -> prost_types::Timestamp {
    crate::convert::timestamp(crate::storage::now_millis())
}

/// Heartbeat message body.
pub fn heartbeat(version: i64) -> pb::Heartbeat {
    pb::Heartbeat {
        environment_version: version,
        server_time: Some(now_timestamp()),
    }
}

/// Starts the task feeding a stream: `first` messages, then the handler's messages for each
/// update, and a heartbeat after each `heartbeat_interval` without a message. The stream
/// ends when the client goes, the server shuts down (clients reconnect elsewhere), or the
/// environment is deleted (`NOT_FOUND`).
pub fn spawn_stream<H: StreamHandler>(
    hub: &Hub,
    environment: Arc<Environment>,
    mut updates: broadcast::Receiver<Arc<Update>>,
    first: Vec<H::Message>,
    mut handler: H,
    guard: StreamGuard,
) -> ResponseStream<H::Message> {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let heartbeat_every = hub.heartbeat_interval();
    let mut closing = hub.closing();
    let mut gone = environment.gone();
    tokio::spawn(async move {
        let _guard = guard;
        for message in first {
            if tx.send(Ok(message)).await.is_err() {
                return;
            }
        }
        let mut beat = tokio::time::interval_at(
            tokio::time::Instant::now() + heartbeat_every,
            heartbeat_every,
        );
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            enum Event {
                Update(Arc<Update>),
                Missed,
                Beat,
                End,
                Gone,
            }
            let event = tokio::select! {
                received = updates.recv() => match received {
                    Ok(update) => Event::Update(update),
                    Err(broadcast::error::RecvError::Lagged(_)) => Event::Missed,
                    Err(broadcast::error::RecvError::Closed) => Event::End,
                },
                _ = beat.tick() => Event::Beat,
                _ = tx.closed() => Event::End,
                _ = closing.wait_for(|closing| *closing) => Event::End,
                _ = gone.wait_for(|gone| *gone) => Event::Gone,
            };
            let messages = match event {
                Event::Update(update) => handler.on_update(&update).await,
                Event::Missed => handler.on_missed(&environment).await,
                Event::Beat => Ok(vec![handler.heartbeat()]),
                Event::End => return,
                Event::Gone => {
                    let _ = tx
                        .send(Err(Status::not_found(format!(
                            "environment `{}` was deleted",
                            environment.label
                        ))))
                        .await;
                    return;
                }
            };
            match messages {
                Ok(messages) => {
                    if !messages.is_empty() {
                        beat.reset();
                    }
                    for message in messages {
                        if tx.send(Ok(message)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}
