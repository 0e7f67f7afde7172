//! The upstream for the proxy benchmarks: answers every request with 200 and a short body, over
//! HTTP/1.1 keep-alive, as fast as it can. Small on purpose, so that what the benchmarks measure
//! is the proxy in front of it.
//!
//! Usage: `bench_upstream ADDR [BODY_BYTES]` (for example 127.0.0.1:18081). Prints "listening
//! ADDR" once bound. With BODY_BYTES, the body is that many bytes of JSON, as large as the
//! configuration a Telegraf agent fetches.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &[u8] = b"{\"status\":\"ok\"}\n";

async fn answer(body: Bytes) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .ok_or("usage: bench_upstream ADDR")?
        .parse()?;
    let body = match std::env::args().nth(2) {
        None => Bytes::from_static(BODY),
        Some(size) => {
            // The JSON around the filler takes 14 bytes.
            let size: usize = size.parse()?;
            if size < 14 {
                return Err("BODY_BYTES: at least 14".into());
            }
            let filler = "x".repeat(size - 14);
            Bytes::from(format!("{{\"config\":\"{filler}\"}}\n"))
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        println!("listening {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_: Request<Incoming>| answer(body.clone()));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
