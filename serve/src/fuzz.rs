//! Entry points for the coverage-guided fuzz target `http` in `tests/fuzz`: arbitrary bytes
//! as the query string of `/recommend` and as the JSON body of `:predict` and `:recommend`
//! (baskets), answered by a
//! small live model (integer or string keys). Each answer must be a status the contract
//! documents, with a JSON body; a panic or anything else is a finding. Not part of the API
//! (hidden from the docs).

use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use cooc_model::artifact::encode;
use cooc_model::{Keys, ModelMeta, ModelParts, ModelStore, Provenance};

use crate::server::{self, AppState, Config, Limits, Reload};

/// A live model behind the request handlers, and a runtime to await them on.
pub struct Harness {
    state: &'static AppState,
    rt: tokio::runtime::Runtime,
}

impl Harness {
    /// Three books keyed by integers (10, 20, 30), or by strings ("0553", "a b", "é") with
    /// `string_keys`, published into a fresh store under the temporary directory.
    pub fn new(string_keys: bool) -> Harness {
        // One directory per harness: tests build several in one process at once.
        static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cooc-fuzz-http-{}-{}-{}",
            std::process::id(),
            string_keys,
            MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let keys = if string_keys {
            Keys::Str(vec!["0553".into(), "a b".into(), "é".into()])
        } else {
            Keys::Int(vec![10, 20, 30])
        };
        let meta = ModelMeta {
            top_k: 2,
            nnz: 5,
            ..ModelMeta::example()
        };
        let titles = vec![
            Some("Ten".to_string()),
            Some("Twenty \"2\"\tand\\".into()),
            None,
        ];
        let bytes = encode(&ModelParts {
            meta: &meta,
            provenance: &Provenance::example(),
            keys: &keys,
            titles: Some(&titles),
            authors: None,
            indptr: &[0, 2, 4, 5],
            indices: &[1, 2, 0, 2, 0],
            scores: &[0.9, 0.3, 0.9, 0.1, 0.3],
            popular: &[(1, 4), (0, 3), (2, 2)],
        });
        let store = ModelStore::new(&dir);
        store
            .publish("v1", &bytes)
            .expect("publishing the fuzz model");
        store.promote("v1").expect("promoting the fuzz model");
        let state = AppState::new(Config {
            store: store.clone(),
            model_name: "recommender".into(),
            default_k: 5,
            reload_interval: Duration::from_secs(3600),
            limits: Limits::default(),
        });
        assert_eq!(state.reload(), Reload::Loaded("v1".into()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        Harness { state, rt }
    }

    /// The server state behind the handlers.
    #[cfg(test)]
    pub(crate) fn state(&self) -> &'static AppState {
        self.state
    }

    /// `GET /recommend?<query>`: 200, 404 or 422, with a JSON body.
    pub fn recommend(&self, query: &[u8]) {
        let query = String::from_utf8_lossy(query).into_owned();
        let resp = self
            .rt
            .block_on(server::recommend_inner(self.state, Some(query), None));
        self.check(resp, &[StatusCode::OK, StatusCode::NOT_FOUND]);
    }

    /// `POST /v1/models/recommender:predict` with `body`: 200 or 422, with a JSON body.
    pub fn predict(&self, body: &[u8]) {
        let resp = server::predict_inner(
            self.state,
            "recommender:predict".into(),
            None,
            Bytes::copy_from_slice(body),
        );
        self.check(resp, &[StatusCode::OK]);
    }

    /// `POST /v1/models/recommender:recommend` with `body`: 200 or 422, with a JSON body;
    /// where the fast path for integer keys answers, the general path answers the same bytes.
    pub fn basket(&self, body: &[u8]) {
        let resp = server::basket_inner(self.state, "recommender:recommend".into(), None, body);
        let got = self.check(resp, &[StatusCode::OK]);
        if server::basket_fast(self.state, None, body).is_some() {
            let general = server::basket_general(self.state, None, body);
            assert_eq!(
                general.status(),
                StatusCode::OK,
                "the general path refused it"
            );
            let want = self.check(general, &[StatusCode::OK]);
            assert_eq!(got, want, "the two paths answer differently");
        }
    }

    fn check(&self, resp: axum::response::Response, ok: &[StatusCode]) -> Bytes {
        let status = resp.status();
        assert!(
            ok.contains(&status) || status == StatusCode::UNPROCESSABLE_ENTITY,
            "undocumented status {status}"
        );
        let body = self
            .rt
            .block_on(axum::body::to_bytes(resp.into_body(), usize::MAX))
            .expect("a body");
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
            panic!("a {status} answer that is not JSON ({e}): {body:?}");
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz target's checked-in seeds pass the harness, and a body that is no JSON at
    /// all is a JSON 422 (the harness's own checks would panic otherwise).
    #[test]
    fn the_seeds_and_garbage_are_answered_as_documented() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fuzz/corpus/http");
        let harnesses = [Harness::new(false), Harness::new(true)];
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            let (&pick, rest) = data.split_first().unwrap();
            let h = &harnesses[usize::from(pick & 2 != 0)];
            if pick & 1 == 0 {
                h.recommend(rest);
            } else if pick & 4 != 0 {
                h.basket(rest);
            } else {
                h.predict(rest);
            }
            seen += 1;
        }
        assert!(seen >= 5, "{seen} seeds");
        for h in &harnesses {
            h.predict(b"\xff\x00{");
            h.basket(b"\xff\x00{");
            h.basket(b"{\"book_ids\": [1e400], \"weights\": [1e39]}");
            h.basket(b"{\"book_ids\": [10, 20, 10, 99], \"weights\": [1, 2.5, 3, 1e-3], \"exclude\": [30, 7], \"k\": 4, \"extra\": {}}");
            h.basket(b"{\"book_ids\": [], \"k\": 100}");
            // Values the fast path's parser would skip unchecked in an unknown field.
            h.basket(b"{\"book_ids\": [10], \"x\": 1e400}");
            h.basket(b"{\"book_ids\": [10], \"x\": \"\xff\"}");
            h.recommend(b"book_id=%ff%fe&k=99999999999999999999");
        }
    }
}
