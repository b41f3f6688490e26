//! A local warehouse's file I/O for iceberg-rust: plain system calls on the calling thread, each written file
//! synced to disk before it is closed.
//!
//! OpenDAL's file-system service runs every open, write, sync and close as a separate task on tokio's blocking
//! pool; a table's first commit writes four files, so building a model paid some twenty thread hand-offs for
//! I/O that takes microseconds. iceberg-rust's own `LocalFsStorage` avoids that but never syncs, so a commit
//! could name files a power cut loses. This keeps OpenDAL's guarantee (a file is on disk before the catalog
//! can point at it) without the hand-offs.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use serde::{Deserialize, Serialize};

/// Builds [`DurableLocalFs`] for a FileIO or a catalog.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DurableLocalFsFactory;

#[typetag::serde]
impl StorageFactory for DurableLocalFsFactory {
    fn build(&self, _config: &StorageConfig) -> iceberg::Result<Arc<dyn Storage>> {
        Ok(Arc::new(DurableLocalFs))
    }
}

/// Files of a local warehouse, addressed as `file:///path` or `/path`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DurableLocalFs;

fn local_path(location: &str) -> PathBuf {
    let path = location
        .strip_prefix("file://")
        .or_else(|| location.strip_prefix("file:"))
        .unwrap_or(location);
    if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        PathBuf::from(format!("/{path}"))
    }
}

fn io_error(action: &str, path: &Path, e: std::io::Error) -> iceberg::Error {
    let kind = if e.kind() == ErrorKind::NotFound {
        iceberg::ErrorKind::DataInvalid
    } else {
        iceberg::ErrorKind::Unexpected
    };
    iceberg::Error::new(kind, format!("{action} {}: {e}", path.display()))
}

/// Creates `path` for writing, and its folders when they are missing (tried after the file, so a table's
/// existing folders cost no system call).
fn create(path: &Path) -> iceberg::Result<File> {
    match File::create(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)
                    .map_err(|e| io_error("creating the folder", parent, e))?;
            }
            File::create(path).map_err(|e| io_error("creating", path, e))
        }
        created => created.map_err(|e| io_error("creating", path, e)),
    }
}

#[async_trait::async_trait]
#[typetag::serde]
impl Storage for DurableLocalFs {
    async fn exists(&self, path: &str) -> iceberg::Result<bool> {
        let path = local_path(path);
        path.try_exists()
            .map_err(|e| io_error("looking for", &path, e))
    }

    async fn metadata(&self, path: &str) -> iceberg::Result<FileMetadata> {
        let path = local_path(path);
        let metadata =
            fs::metadata(&path).map_err(|e| io_error("reading the size of", &path, e))?;
        Ok(FileMetadata {
            size: metadata.len(),
        })
    }

    async fn read(&self, path: &str) -> iceberg::Result<Bytes> {
        let path = local_path(path);
        fs::read(&path)
            .map(Bytes::from)
            .map_err(|e| io_error("reading", &path, e))
    }

    async fn reader(&self, path: &str) -> iceberg::Result<Box<dyn FileRead>> {
        let path = local_path(path);
        let file = File::open(&path).map_err(|e| io_error("opening", &path, e))?;
        Ok(Box::new(LocalRead { file, path }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> iceberg::Result<()> {
        let mut writer = LocalWrite::create(local_path(path))?;
        writer.write(bs).await?;
        writer.close().await
    }

    async fn writer(&self, path: &str) -> iceberg::Result<Box<dyn FileWrite>> {
        Ok(Box::new(LocalWrite::create(local_path(path))?))
    }

    async fn delete(&self, path: &str) -> iceberg::Result<()> {
        let path = local_path(path);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io_error("deleting", &path, e)),
            _ => Ok(()),
        }
    }

    async fn delete_prefix(&self, path: &str) -> iceberg::Result<()> {
        let path = local_path(path);
        match fs::remove_dir_all(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io_error("deleting", &path, e)),
            _ => Ok(()),
        }
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> iceberg::Result<()> {
        while let Some(path) = paths.next().await {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> iceberg::Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> iceberg::Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

struct LocalRead {
    file: File,
    path: PathBuf,
}

#[async_trait::async_trait]
impl FileRead for LocalRead {
    async fn read(&self, range: Range<u64>) -> iceberg::Result<Bytes> {
        let len = usize::try_from(range.end.saturating_sub(range.start)).map_err(|_| {
            iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                format!("a read of {} is too large", self.path.display()),
            )
        })?;
        let mut buffer = vec![0u8; len];
        self.file
            .read_exact_at(&mut buffer, range.start)
            .map_err(|e| io_error("reading", &self.path, e))?;
        Ok(Bytes::from(buffer))
    }
}

/// A file being written; `close` syncs it to disk.
struct LocalWrite {
    file: Option<File>,
    path: PathBuf,
}

impl LocalWrite {
    fn create(path: PathBuf) -> iceberg::Result<Self> {
        Ok(LocalWrite {
            file: Some(create(&path)?),
            path,
        })
    }

    fn open(&mut self) -> iceberg::Result<&mut File> {
        self.file.as_mut().ok_or_else(|| {
            iceberg::Error::new(
                iceberg::ErrorKind::Unexpected,
                format!("{} is already closed", self.path.display()),
            )
        })
    }
}

#[async_trait::async_trait]
impl FileWrite for LocalWrite {
    async fn write(&mut self, bs: Bytes) -> iceberg::Result<()> {
        let path = self.path.clone();
        self.open()?
            .write_all(&bs)
            .map_err(|e| io_error("writing", &path, e))
    }

    async fn close(&mut self) -> iceberg::Result<()> {
        let path = self.path.clone();
        self.open()?
            .sync_all()
            .map_err(|e| io_error("syncing", &path, e))?;
        self.file = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        futures::executor::block_on(future)
    }

    #[test]
    fn files_round_trip_and_missing_folders_are_created() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = DurableLocalFs;
        let location = format!("file://{}/t/metadata/v1.json", dir.path().display());
        run(storage.write(&location, Bytes::from_static(b"{\"a\": 1}"))).expect("write");
        assert!(run(storage.exists(&location)).expect("exists"));
        assert_eq!(run(storage.metadata(&location)).expect("size").size, 8);
        assert_eq!(
            &run(storage.read(&location)).expect("read")[..],
            b"{\"a\": 1}"
        );
        let reader = run(storage.reader(&location)).expect("reader");
        assert_eq!(&run(reader.read(1..4)).expect("range")[..], b"\"a\"");

        let mut writer = run(storage.writer(&format!("{}/t/data/f.parquet", dir.path().display())))
            .expect("writer");
        run(writer.write(Bytes::from_static(b"PAR1"))).expect("write");
        run(writer.write(Bytes::from_static(b"PAR1"))).expect("write");
        run(writer.close()).expect("close");
        assert!(run(writer.write(Bytes::from_static(b"x"))).is_err());
        assert_eq!(
            fs::read(dir.path().join("t/data/f.parquet")).expect("read back"),
            b"PAR1PAR1"
        );

        run(storage.delete(&location)).expect("delete");
        run(storage.delete(&location)).expect("deleting a missing file is not an error");
        assert!(!run(storage.exists(&location)).expect("exists"));
        run(storage.delete_prefix(&format!("file://{}/t", dir.path().display()))).expect("prefix");
        assert!(!dir.path().join("t").exists());
        assert!(run(storage.read(&location)).is_err());
    }
}
