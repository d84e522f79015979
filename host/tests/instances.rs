//! Many instances in one process: the pooling allocator holds a thousand live instances of a
//! plugin, each publishing its own records, and refuses one more in one line.

use std::time::{Duration, Instant};

use wafka::{Engine, EngineOptions, PluginError, PluginOptions};
use wafka_producer::Producer;
use wafka_tests::{brokers, consume_exactly, create_topic, guest};

fn config(topic: &str) -> Vec<(String, String)> {
    vec![
        ("topic".into(), topic.into()),
        ("key-delimiter".into(), "=".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_instances_live_at_once() {
    let engine = Engine::with_options(EngineOptions {
        max_instances: 1000,
    })
    .unwrap();
    let plugin = engine
        .load_file(&guest("hello"), PluginOptions::new("hello"))
        .unwrap();
    let topic = create_topic("instances", 4);
    let p = Producer::from_properties([("bootstrap.servers", brokers().as_str())]).unwrap();
    let started = Instant::now();
    let mut instances = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let mut i = plugin.instantiate(&p).await.unwrap();
        i.init(&config(&topic)).await.unwrap();
        instances.push(i);
    }
    let started_all = started.elapsed();
    // Every instance is alive: each publishes its own record.
    for (n, i) in instances.iter_mut().enumerate() {
        i.handle(format!("k{n}=v{n}").as_bytes()).await.unwrap();
    }
    for i in &instances {
        i.flush().await.unwrap();
    }
    let got = consume_exactly(&brokers(), &topic, 1000, Duration::from_secs(60));
    let mut values: Vec<String> = got
        .iter()
        .map(|c| String::from_utf8(c.value.clone().unwrap()).unwrap())
        .collect();
    values.sort();
    let mut want: Vec<String> = (0..1000).map(|n| format!("v{n}")).collect();
    want.sort();
    assert_eq!(values, want);
    // About a millisecond each in a debug build; tight numbers are in the benchmark.
    assert!(
        started_all < Duration::from_secs(30),
        "1,000 instances took {started_all:?} to start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_more_than_the_pool_is_refused_in_one_line() {
    let engine = Engine::with_options(EngineOptions { max_instances: 3 }).unwrap();
    let plugin = engine
        .load_file(&guest("hello"), PluginOptions::new("hello"))
        .unwrap();
    let p = Producer::from_properties([("bootstrap.servers", brokers().as_str())]).unwrap();
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(plugin.instantiate(&p).await.unwrap());
    }
    let e = plugin.instantiate(&p).await.map(drop).unwrap_err();
    assert!(matches!(e, PluginError::Instantiate { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.starts_with("plugin `hello` cannot start: "), "{text}");
    assert!(text.contains("limit of 3"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    // A slot comes back when an instance goes.
    live.pop();
    let mut i = plugin.instantiate(&p).await.unwrap();
    i.init(&config("unused")).await.unwrap();
}
