//! Throughput of the gang's QUIC collectives on loopback against one plain QUIC stream and
//! one TCP stream moving the same bytes: `cargo bench --bench collectives -- [MiB] [RUNS]`.
//!
//! Two ranks in this process, each on its own runtime thread, over the real endpoints
//! (TLS, the shared-secret handshake, the transport settings of a gang). Medians of RUNS.

use std::time::{Duration, Instant};

use cooc::gang::link::{Hello, Node, PROTOCOL_VERSION};
use cooc::gang::mesh::{rendezvous, Mesh};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn gbit(bytes: usize, d: Duration) -> f64 {
    bytes as f64 * 8.0 / d.as_secs_f64() / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn mesh_pair() -> (Mesh, Mesh) {
    let nodes: Vec<Node> = (0..2)
        .map(|rank| {
            let hello = Hello {
                protocol: PROTOCOL_VERSION,
                job: "bench".into(),
                restart_attempt: 0,
                rank,
                world: 2,
                fingerprint: "bench".into(),
            };
            Node::bind("127.0.0.1:0".parse().unwrap(), SECRET, hello).unwrap()
        })
        .collect();
    let peers: Vec<String> = nodes
        .iter()
        .map(|n| n.local_addr().unwrap().to_string())
        .collect();
    let mut it = nodes.into_iter();
    let (n0, n1) = (it.next().unwrap(), it.next().unwrap());
    let p1 = peers.clone();
    let t = Duration::from_secs(10);
    let a = tokio::spawn(async move { rendezvous(n0, 0, &peers, t).await.unwrap() });
    let b = tokio::spawn(async move { rendezvous(n1, 1, &p1, t).await.unwrap() });
    (a.await.unwrap(), b.await.unwrap())
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mib: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(256);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let n = mib << 20;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (m0, m1) = mesh_pair().await;
        let (m0, m1) = (std::sync::Arc::new(m0), std::sync::Arc::new(m1));
        let payload = vec![7u8; n];
        let mut one_way = Vec::new();
        let mut both = Vec::new();
        for _ in 0..runs {
            // One stream, one direction: rank 0 -> rank 1.
            let (a, b) = (m0.clone(), m1.clone());
            let p = payload.clone();
            let t = Instant::now();
            let x = tokio::spawn(async move { a.all_to_all("bench", vec![Vec::new(), p]).await });
            let y =
                tokio::spawn(
                    async move { b.all_to_all("bench", vec![Vec::new(), Vec::new()]).await },
                );
            let got = y.await.unwrap().unwrap();
            x.await.unwrap().unwrap();
            assert_eq!(got[0].len(), n);
            one_way.push(gbit(n, t.elapsed()));
            // The all-to-all collective: both ranks send n bytes at once.
            let (a, b) = (m0.clone(), m1.clone());
            let (p, q) = (payload.clone(), payload.clone());
            let t = Instant::now();
            let x = tokio::spawn(async move { a.all_to_all("bench", vec![Vec::new(), p]).await });
            let y = tokio::spawn(async move { b.all_to_all("bench", vec![q, Vec::new()]).await });
            x.await.unwrap().unwrap();
            y.await.unwrap().unwrap();
            both.push(gbit(2 * n, t.elapsed()));
        }
        // Plain TCP, one direction.
        let mut tcp = Vec::new();
        for _ in 0..runs {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let p = payload.clone();
            let t = Instant::now();
            let w = tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                s.write_all(&p).await.unwrap();
            });
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = Vec::with_capacity(n);
            s.read_to_end(&mut got).await.unwrap();
            w.await.unwrap();
            assert_eq!(got.len(), n);
            tcp.push(gbit(n, t.elapsed()));
        }
        let (q, c, t) = (median(one_way), median(both), median(tcp));
        println!("{mib} MiB per message, median of {runs} runs, loopback:");
        println!("  one QUIC stream, one direction:   {q:6.2} Gbit/s");
        println!(
            "  all-to-all, both ranks at once:   {c:6.2} Gbit/s in total ({:.0}% of one stream)",
            100.0 * c / q
        );
        println!("  one TCP stream, one direction:    {t:6.2} Gbit/s");
    });
}
