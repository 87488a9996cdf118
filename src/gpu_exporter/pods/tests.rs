use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use futures::future::BoxFuture;

use super::*;

pub(crate) fn devices(resource: &str, ids: &[&str]) -> ContainerDevices {
    ContainerDevices {
        resource_name: resource.into(),
        device_ids: ids.iter().map(|s| s.to_string()).collect(),
    }
}

pub(crate) fn pod(
    ns: &str,
    name: &str,
    container: &str,
    devs: Vec<ContainerDevices>,
) -> PodResources {
    PodResources {
        name: name.into(),
        namespace: ns.into(),
        containers: vec![ContainerResources {
            name: container.into(),
            devices: devs,
        }],
    }
}

/// What a GPU node's kubelet might answer: a whole GPU, one GPU time-sliced
/// between two pods, a MIG device, a GPU named by index, and devices that are
/// not NVIDIA GPUs.
fn node() -> ListPodResourcesResponse {
    ListPodResourcesResponse {
        pod_resources: vec![
            pod(
                "llm",
                "vllm-0",
                "vllm",
                vec![devices("nvidia.com/gpu", &["GPU-aaaa"])],
            ),
            pod(
                "llm",
                "small-0",
                "server",
                vec![devices("nvidia.com/gpu", &["GPU-bbbb::0"])],
            ),
            pod(
                "llm",
                "small-1",
                "server",
                vec![devices("nvidia.com/gpu", &["GPU-bbbb::3"])],
            ),
            pod(
                "mig",
                "tiny",
                "m",
                vec![devices("nvidia.com/mig-1g.10gb", &["MIG-cccc"])],
            ),
            pod(
                "idx",
                "by-index",
                "c",
                vec![devices("nvidia.com/gpu", &["3"])],
            ),
            pod(
                "other",
                "nic",
                "c",
                vec![devices("example.com/rdma", &["GPU-aaaa", "0"])],
            ),
            pod("other", "cpu-only", "c", vec![]),
        ],
    }
}

fn names(pods: &[PodRef]) -> Vec<String> {
    pods.iter()
        .map(|p| format!("{}/{}/{}", p.namespace, p.name, p.container))
        .collect()
}

#[test]
fn gpus_map_to_the_containers_that_hold_them() {
    let h = holders(&node());
    assert_eq!(names(of(&h, "GPU-aaaa", 0)), ["llm/vllm-0/vllm"]);
    assert_eq!(
        names(of(&h, "GPU-bbbb", 1)),
        ["llm/small-0/server", "llm/small-1/server"],
        "time-sliced replicas are one GPU held by both pods"
    );
    assert_eq!(names(of(&h, "MIG-cccc", 9)), ["mig/tiny/m"]);
    assert_eq!(names(of(&h, "GPU-dddd", 3)), ["idx/by-index/c"], "by index");
    assert!(
        of(&h, "GPU-eeee", 0).is_empty(),
        "another vendor's devices are not GPUs"
    );
    assert_eq!(h.len(), 4);
}

/// The kubelet's side of the call, answered with a fixed list.
#[derive(Clone)]
struct Kubelet(ListPodResourcesResponse);

impl tonic::server::NamedService for Kubelet {
    const NAME: &'static str = "v1.PodResourcesLister";
}

struct Answer(ListPodResourcesResponse);

impl tonic::server::UnaryService<ListPodResourcesRequest> for Answer {
    type Response = ListPodResourcesResponse;
    type Future = Ready<Result<tonic::Response<Self::Response>, tonic::Status>>;
    fn call(&mut self, _: tonic::Request<ListPodResourcesRequest>) -> Self::Future {
        ready(Ok(tonic::Response::new(self.0.clone())))
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Kubelet {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let answer = Answer(self.0.clone());
        Box::pin(async move {
            if req.uri().path() != LIST {
                return Ok(tonic::Status::unimplemented(req.uri().path().to_string()).into_http());
            }
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(answer, req).await)
        })
    }
}

/// Serves `answer` on a Unix socket in a fresh directory.
pub(crate) async fn kubelet(answer: ListPodResourcesResponse) -> (tempdir::Dir, PathBuf) {
    let dir = tempdir::Dir::new();
    let socket = dir.0.join("kubelet.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let incoming = futures::stream::unfold(listener, |l| async move {
        let next = l.accept().await.map(|(s, _)| s);
        Some((next, l))
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Kubelet(answer))
            .serve_with_incoming(incoming),
    );
    (dir, socket)
}

pub(crate) mod tempdir {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    static NEXT: AtomicU32 = AtomicU32::new(0);

    /// A directory removed when dropped.
    pub struct Dir(pub PathBuf);

    impl Dir {
        pub fn new() -> Self {
            let p = std::env::temp_dir().join(format!(
                "benchrun-podres-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[tokio::test]
async fn the_kubelets_list_comes_back_over_grpc_on_its_socket() {
    let (_dir, socket) = kubelet(node()).await;
    let client = PodResourcesClient::new(&socket);
    let got = client.list().await.unwrap();
    assert_eq!(got, node());
    assert_eq!(
        names(of(&holders(&got), "GPU-aaaa", 0)),
        ["llm/vllm-0/vllm"]
    );
    // The channel is kept and used again.
    assert_eq!(client.list().await.unwrap(), node());
}

#[tokio::test]
async fn a_missing_socket_is_an_error_that_names_it() {
    let dir = tempdir::Dir::new();
    let socket = dir.0.join("absent.sock");
    let e = PodResourcesClient::new(&socket).list().await.unwrap_err();
    assert!(e.contains("absent.sock"), "{e}");
}
