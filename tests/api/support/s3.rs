//! A real S3-compatible server in-process: `s3s` + `s3s-fs` on a temporary directory, with
//! SigV4 authentication on, so it rejects unsigned, tampered and expired URLs with 403 just as
//! Akave O3 does. Each test gets its own server, bucket and directory.
#![allow(dead_code)]

use std::net::SocketAddr;

use aws_credential_types::Credentials;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

/// Test credentials (not secret anywhere but here).
pub const ACCESS_KEY: &str = "AKIAWWTESTKEY0000001";
/// The secret key; tests check it never reaches a log.
pub const SECRET_KEY: &str = "wwTestSecret/Key+never-LOGGED-0123456789";

pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub addr: SocketAddr,
    pub bucket: String,
    root: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl S3Server {
    /// Starts a server with one empty bucket.
    pub async fn start() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        let bucket = format!("weights-{}", rand::random::<u32>());
        std::fs::create_dir(root.path().join(&bucket)).expect("bucket dir");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
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
        Self {
            endpoint: format!("http://{addr}"),
            addr,
            bucket,
            root,
            task,
        }
    }

    /// Stores an object (written where s3s-fs keeps it; the server reads it like any other).
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let path = self.root.path().join(&self.bucket).join(key);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("object dir");
        }
        std::fs::write(path, bytes).expect("object");
    }

    /// Credentials the server accepts.
    pub fn credentials(&self) -> Credentials {
        Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test")
    }

    /// The unsigned URL of an object.
    pub fn plain_url(&self, key: &str) -> String {
        format!("{}/{}/{key}", self.endpoint, self.bucket)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
