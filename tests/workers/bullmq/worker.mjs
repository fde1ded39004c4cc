// BullMQ's stock Worker, unmodified, on kafka2redis's `bullmq` jobs (tests/job_queues.rs). The job's
// data is the bridge's `json` record; the processor appends {"id","name","topic","partition",
// "offset","value"[,"value_encoding"]} of each job it ran as one JSON line to K2R_WORKER_OUT.
//
//   node worker.mjs
//
// Environment: K2R_REDIS_HOST, K2R_REDIS_PORT, K2R_REDIS_DB (127.0.0.1, 6379, 0), or K2R_REDIS_CLUSTER
// (host:port,… of Redis Cluster nodes, which needs a {hash tag} in the prefix), K2R_BULLMQ_PREFIX (bull),
// K2R_BULLMQ_QUEUE (required), K2R_WORKER_OUT (required), K2R_WORKER_SLEEP (seconds each job waits
// before recording, 0), K2R_BULLMQ_STALLED_INTERVAL (ms between the worker's stalled-job checks,
// BullMQ's default 30000). One job at a time (concurrency 1), so jobs run in the order they wait.
import { appendFileSync } from 'node:fs';
import { Worker } from 'bullmq';
import { Cluster } from 'ioredis';

const env = process.env;
if (!env.K2R_BULLMQ_QUEUE || !env.K2R_WORKER_OUT) {
  console.error('worker.mjs: K2R_BULLMQ_QUEUE and K2R_WORKER_OUT are required');
  process.exit(2);
}
const pause = Number(env.K2R_WORKER_SLEEP || 0) * 1000;
const options = {
  connection: {
    host: env.K2R_REDIS_HOST || '127.0.0.1',
    port: Number(env.K2R_REDIS_PORT || 6379),
    db: Number(env.K2R_REDIS_DB || 0),
  },
  prefix: env.K2R_BULLMQ_PREFIX || 'bull',
  concurrency: 1,
};
if (env.K2R_REDIS_CLUSTER) {
  const nodes = env.K2R_REDIS_CLUSTER.split(',').map((address) => {
    const [host, port] = address.split(':');
    return { host, port: Number(port) };
  });
  // A Worker's blocking commands must wait as long as they block.
  options.connection = new Cluster(nodes, { redisOptions: { maxRetriesPerRequest: null } });
}
if (env.K2R_BULLMQ_STALLED_INTERVAL) {
  options.stalledInterval = Number(env.K2R_BULLMQ_STALLED_INTERVAL);
  options.lockDuration = Number(env.K2R_BULLMQ_STALLED_INTERVAL);
}

const worker = new Worker(
  env.K2R_BULLMQ_QUEUE,
  async (job) => {
    if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
    const message = job.data;
    const line = {
      id: job.id,
      name: job.name,
      topic: message.topic,
      partition: message.partition,
      offset: message.offset,
      value: message.value,
    };
    if ('value_encoding' in message) line.value_encoding = message.value_encoding;
    appendFileSync(env.K2R_WORKER_OUT, JSON.stringify(line) + '\n');
  },
  options,
);
worker.on('failed', (job, err) => console.error(`job ${job && job.id} failed: ${err}`));
worker.on('error', (err) => console.error(`worker error: ${err}`));
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, async () => {
    await worker.close();
    process.exit(0);
  });
}
