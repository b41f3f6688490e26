//! A real S3 HTTP server on loopback for object-storage tests: s3s-fs (files in a temp folder), with SigV4
//! signatures checked against one access key, served by hyper on a background thread.

use std::path::PathBuf;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

pub const ACCESS_KEY: &str = "lake-test-access-key";
pub const SECRET_KEY: &str = "lake-test-secret-Zq8vW3";
pub const REGION: &str = "us-east-1";

pub struct S3Server {
    pub endpoint: String,
    /// The server's files: `<root>/<bucket>/<key>`.
    pub root: PathBuf,
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts a server with the given buckets; it runs until the test process exits.
    pub fn start(buckets: &[&str]) -> S3Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        for bucket in buckets {
            std::fs::create_dir_all(root.join(bucket)).expect("bucket dir");
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("non-blocking");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let fs = s3s_fs::FileSystem::new(&root).expect("s3s-fs root");
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async move {
                let mut builder = S3ServiceBuilder::new(fs);
                builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
                let service = builder.build();
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let http = ConnBuilder::new(TokioExecutor::new());
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        continue;
                    };
                    let conn = http
                        .serve_connection(TokioIo::new(socket), service.clone())
                        .into_owned();
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
            });
        });
        S3Server {
            endpoint,
            root,
            _dir: dir,
        }
    }

    /// Files stored under `bucket/prefix`, relative to the bucket.
    pub fn objects(&self, bucket: &str) -> Vec<String> {
        let base = self.root.join(bucket);
        let mut out: Vec<String> = walkdir::WalkDir::new(&base)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| {
                let relative = e
                    .path()
                    .strip_prefix(&base)
                    .ok()?
                    .to_string_lossy()
                    .into_owned();
                // s3s-fs keeps per-object metadata in hidden sidecar files.
                (!relative.rsplit('/').next()?.starts_with('.')).then_some(relative)
            })
            .collect();
        out.sort();
        out
    }
}
