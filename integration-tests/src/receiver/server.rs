//! The listener, the connections and the request handling.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::body::{full, Closed, Partial, ReplyBody};
use super::captured::{Captured, Decoded, Endpoint};
use super::control;
use super::decode::{decode_as, TraceDetail};
use super::error::ReceiverError;
use super::failure::{ConnAction, FailureMode, ListenerState, Schedule};
use super::store::Store;

/// Request bodies larger than this are cut off (the connection is closed).
const MAX_BODY: usize = 256 << 20;
/// How often the accept loop re-reads the schedule (timed steps end on their own).
const RECHECK: Duration = Duration::from_millis(20);

pub(crate) struct Shared {
    pub store: Store,
    traces: TraceDetail,
    schedule: Mutex<Schedule>,
    /// Bumped whenever the schedule may have moved on.
    changed: watch::Sender<u64>,
    /// Bumped when a global `Refuse` starts: open connections drop.
    refuse_epoch: watch::Sender<u64>,
    /// Whether the listener is open now.
    pub listening: watch::Sender<bool>,
    tls: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
    /// The answer of `GET /features`; None answers 404.
    features: Mutex<Option<String>>,
}

impl Shared {
    pub fn new(
        store: Store,
        traces: TraceDetail,
        tls: Option<TlsAcceptor>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            store,
            traces,
            schedule: Mutex::new(Schedule::default()),
            changed: watch::channel(0).0,
            refuse_epoch: watch::channel(0).0,
            listening: watch::channel(true).0,
            tls,
            shutdown,
            features: Mutex::new(None),
        }
    }

    pub fn set_features(&self, answer: Option<String>) {
        *self.features.lock().unwrap_or_else(|e| e.into_inner()) = answer;
    }

    fn features(&self) -> Option<String> {
        self.features
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Changes the schedule and wakes the accept loop.
    pub fn update_schedule<T>(&self, f: impl FnOnce(&mut Schedule) -> T) -> T {
        let out = f(&mut self.schedule());
        self.changed.send_modify(|n| *n += 1);
        out
    }

    /// Whether the schedule wants the listener open now.
    pub fn listener_wanted(&self) -> bool {
        self.schedule().listener_state(Instant::now()) == ListenerState::Open
    }

    fn schedule(&self) -> MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn until_shutdown(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, ReceiverError> {
    let err = |source| ReceiverError::Bind {
        addr: addr.to_string(),
        source,
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(1024).map_err(err)
}

/// Accepts until shutdown, closing and reopening the listener as the schedule says.
pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    let mut changed = shared.changed.subscribe();
    let mut shutdown = shared.shutdown.clone();
    loop {
        while connections.try_join_next().is_some() {}
        if *shutdown.borrow() {
            break;
        }
        let state = shared.schedule().listener_state(Instant::now());
        if let ListenerState::Closed(until) = state {
            if listener.take().is_some() {
                shared.listening.send_replace(false);
                shared.refuse_epoch.send_modify(|n| *n += 1);
            }
            let wait = until
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(RECHECK)
                .min(RECHECK);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = changed.changed() => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let open = match listener.as_ref() {
            Some(l) => l,
            None => match bind(addr).await {
                Ok(l) => {
                    shared.listening.send_replace(true);
                    listener.insert(l)
                }
                Err(e) => {
                    eprintln!("capture-receiver: reopening: {e}");
                    tokio::time::sleep(RECHECK).await;
                    continue;
                }
            },
        };
        tokio::select! {
            accepted = open.accept() => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(connection(shared.clone(), stream));
                }
            }
            _ = tokio::time::sleep(RECHECK) => {}
            _ = changed.changed() => {}
            _ = shutdown.changed() => {}
        }
    }
    // Dropping the set aborts every connection, hanging ones included.
}

async fn connection(shared: Arc<Shared>, stream: TcpStream) {
    let action = shared.update_schedule(|s| s.on_connection(Instant::now()));
    match action {
        ConnAction::Serve => {}
        ConnAction::Reset => {
            // Linger 0: the close sends a reset rather than a FIN.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            shared.store.count_reset();
            return;
        }
        ConnAction::Delay(d) => tokio::time::sleep(d).await,
    }
    let _ = stream.set_nodelay(true);
    match shared.tls.clone() {
        Some(acceptor) => {
            let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
            if let Ok(Ok(tls)) = handshake.await {
                serve(shared, tls, true).await;
            }
        }
        None => serve(shared, stream, false).await,
    }
}

async fn serve<I>(shared: Arc<Shared>, io: I, tls: bool)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut refuse = shared.refuse_epoch.subscribe();
    let handler = shared.clone();
    let service = service_fn(move |req| handle(handler.clone(), tls, req));
    let conn = http1::Builder::new().serve_connection(TokioIo::new(io), service);
    tokio::select! {
        _ = conn => {}
        _ = refuse.changed() => {}
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn api_key(query: Option<&str>, headers: &[(String, String)]) -> Option<String> {
    let from_query = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "api_key")
            .map(|(_, v)| v.into_owned())
    });
    from_query.or_else(|| {
        ["sts-api-key", "dd-api-key", "x-dd-apikey"]
            .iter()
            .find_map(|name| headers.iter().find(|(k, _)| k == name))
            .map(|(_, v)| v.clone())
    })
}

async fn handle(
    shared: Arc<Shared>,
    tls: bool,
    req: Request<Incoming>,
) -> Result<Response<ReplyBody>, Closed> {
    let (parts, mut body) = req.into_parts();
    if parts.uri.path().starts_with(control::PREFIX) {
        return Ok(control::handle(&shared, &parts, body).await);
    }
    let endpoint = Endpoint::classify(parts.method.as_str(), parts.uri.path());
    let injected = shared.update_schedule(|s| s.on_request(endpoint, Instant::now()));
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let query = parts.uri.query().map(str::to_owned);
    let mut record = Captured {
        seq: shared.store.next_seq(),
        endpoint,
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        api_key: api_key(query.as_deref(), &headers),
        query,
        headers,
        body_raw_len: 0,
        decoded: Decoded::Incomplete,
        injected: injected.clone(),
        status: None,
        tls,
        received_at_ms: now_ms(),
    };
    match &injected {
        Some(FailureMode::Refuse) => {
            shared.store.push(record);
            return Err(Closed);
        }
        Some(FailureMode::CloseMidRequest) => {
            if let Some(Ok(frame)) = body.frame().await {
                record.body_raw_len = frame.data_ref().map_or(0, Bytes::len);
            }
            shared.store.push(record);
            return Err(Closed);
        }
        Some(FailureMode::SlowAccept { ms }) => {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
        }
        _ => {}
    }

    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            shared.store.push(record);
            return Err(Closed);
        }
    };
    record.body_raw_len = bytes.len();
    let encoding = parts
        .headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let (status, text) = match decode_as(endpoint, encoding, &bytes, shared.traces) {
        Ok(decoded) => {
            record.decoded = decoded;
            match endpoint {
                Endpoint::Unknown => (StatusCode::NOT_FOUND, "no such endpoint\n".to_owned()),
                Endpoint::Features => match shared.features() {
                    Some(answer) => (StatusCode::OK, answer),
                    None => (StatusCode::NOT_FOUND, "no features\n".to_owned()),
                },
                _ => (StatusCode::OK, "{}".to_owned()),
            }
        }
        Err(e) => {
            let text = format!("{e}\n");
            record.decoded = Decoded::Invalid {
                error: e.to_string(),
            };
            (StatusCode::BAD_REQUEST, text)
        }
    };

    let reply = match injected {
        Some(FailureMode::Hang) => {
            shared.store.push(record);
            shared.until_shutdown().await;
            return Err(Closed);
        }
        Some(FailureMode::CloseMidBody) => {
            let body = Partial::boxed(4096, Bytes::from_static(b"{\"partial\":"));
            Response::builder()
                .status(StatusCode::OK)
                .header(CONTENT_TYPE, "application/json")
                .body(body)
        }
        Some(FailureMode::Status {
            code,
            retry_after_s,
            body,
        }) => {
            let mut builder = Response::builder().status(code);
            let retry = retry_after_s.or(matches!(code, 429 | 503).then_some(1));
            if let Some(s) = retry {
                builder = builder.header(RETRY_AFTER, HeaderValue::from(s));
            }
            let text = body.unwrap_or_else(|| format!("capture-receiver: injected {code}\n"));
            builder.body(full(text))
        }
        _ => Response::builder()
            .status(status)
            .header(
                CONTENT_TYPE,
                if status == StatusCode::OK {
                    "application/json"
                } else {
                    "text/plain"
                },
            )
            .body(full(text)),
    };
    match reply {
        Ok(response) => {
            record.status = Some(response.status().as_u16());
            shared.store.push(record);
            Ok(response)
        }
        Err(_) => {
            // An out-of-range injected status: answer 500 and say why.
            record.status = Some(500);
            shared.store.push(record);
            let mut response = Response::new(full("capture-receiver: bad injected status\n"));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            Ok(response)
        }
    }
}
