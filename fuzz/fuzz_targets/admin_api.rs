//! Any request to the administration API (method, path and query, headers, body; with a
//! valid token or not): the router always answers, never panics, and every error is a
//! problem document. Requests go straight into the router, as the HTTPS listener hands them
//! over, against a store of its own in a temporary directory.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use confab_store::Store;
use libfuzzer_sys::fuzz_target;
use tower_service::Service;

struct World {
    runtime: tokio::runtime::Runtime,
    router: Mutex<axum::Router>,
    token: String,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("confab-fuzz-api-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = confab_store::SqliteStore::open(&dir.join("store.db")).unwrap();
        let root = confab_admin::Actor::console();
        confab_admin::tokens::add(&store, &root, "fuzz", &[confab_admin::Role::Administrator])
            .unwrap();
        let (token, _) = confab_admin::tokens::issue(&store, &root, "fuzz", 1).unwrap();
        store.add_user("alice@example.com", "pw", None).unwrap();
        let text = confab_topology::single_server_toml(
            "example.com",
            "fe.example.com",
            "127.0.0.1".parse().unwrap(),
            5060,
            5061,
        );
        let topology = confab_topology::load(&text, "fuzz").unwrap();
        let state = Arc::new(confab_web::WebState {
            topology: Arc::new(topology),
            store: Mutex::new(Box::new(store)),
            plain_api: false,
            metrics: None,
        });
        World {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            router: Mutex::new(confab_web::router(state)),
            token,
        }
    })
}

const METHODS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let target = lines.next().unwrap_or_default();
    let w = world();
    let mut req = axum::http::Request::builder()
        .method(METHODS[usize::from(first) % METHODS.len()])
        .uri(format!("/api/v1/{}", target.trim_start_matches('/')));
    if first & 0x80 == 0 {
        req = req.header("authorization", format!("Bearer {}", w.token));
    }
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            req = req.header(name.trim(), value.trim());
        }
    }
    let Ok(mut req) = req.body(axum::body::Body::from(body.to_owned())) else {
        return; // not a request HTTP could carry
    };
    req.extensions_mut().insert(axum::extract::ConnectInfo(confab_web::listener::Peer {
        addr: "127.0.0.1:9".parse().unwrap(),
        tls: true,
    }));
    let mut router = w.router.lock().unwrap().clone();
    let resp = w.runtime.block_on(router.call(req)).unwrap();
    let status = resp.status();
    if status.as_u16() >= 400 {
        let kind = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(kind, "application/problem+json", "{status}");
    }
    assert_ne!(status.as_u16(), 500, "an internal error");
});
