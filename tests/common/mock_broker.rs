//! librdkafka's mock cluster, served by threads of the test process: a broker that keeps commit
//! metadata and whose faults rdkafka's `mocking` module can set.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use super::kafka::Broker;

/// The mock cluster and a [`Broker`] handle on it for the shared helpers (producing, committed
/// offsets, watermarks).
pub struct MockBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
    pub broker: Broker,
}

impl MockBroker {
    pub fn start() -> MockBroker {
        let cluster = MockCluster::new(1).expect("librdkafka's mock cluster");
        let broker = Broker {
            address: cluster.bootstrap_servers(),
        };
        MockBroker { cluster, broker }
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.cluster
            .create_topic(name, partitions, 1)
            .expect("creating a topic on the mock cluster");
    }
}
