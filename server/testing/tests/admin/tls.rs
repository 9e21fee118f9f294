//! The server over TLS (rustls), with a test certificate.

use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use vexil_proto::v1 as pb;
use vexil_proto::v1::admin_service_client::AdminServiceClient;
use vexil_server::server::{self, Settings, TlsFiles};

use vexil_testing::authed;

const CA: &str = include_str!("tls/ca.pem");
const CERT: &str = include_str!("tls/cert.pem");
const KEY: &str = include_str!("tls/key.pem");

#[tokio::test]
async fn serves_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        data_dir: dir.path().to_path_buf(),
        database_url: None,
        database_replica_url: None,
        jwt_secret: Some("a shared secret for every instance".into()),
    };
    let prepared = server::prepare(&settings).await.unwrap();
    let credentials: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(server::CREDENTIALS_FILE)).unwrap(),
    )
    .unwrap();
    let token = credentials["admin_token"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        !dir.path().join(server::JWT_SECRET_FILE).exists(),
        "a given secret is not written to disk"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let tls = TlsFiles {
        cert: CERT.as_bytes().to_vec(),
        key: KEY.as_bytes().to_vec(),
    };
    let task = tokio::spawn(server::serve(prepared, listener, Some(tls), async {
        let _ = stopped.await;
    }));

    let channel = Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(CA))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .expect("TLS connection");
    let mut admin = AdminServiceClient::new(channel);
    let projects = admin
        .list_projects(authed(pb::ListProjectsRequest { page: None }, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(projects.projects[0].key, "default");

    // A plaintext client cannot talk to it.
    let plain = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(plain) = plain {
        let result = AdminServiceClient::new(plain)
            .list_projects(authed(pb::ListProjectsRequest { page: None }, &token))
            .await;
        assert!(result.is_err());
    }
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}
