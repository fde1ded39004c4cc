// Adds jobs with BullMQ's own client (Queue.add), for comparing what it writes with what
// kafka2redis writes for the same records (tests/job_queues.rs). Usage:
//
//   node client_add.mjs < jobs.jsonl
//
// Each input line is {"id": JOB_ID, "record": RECORD, "opts": JOB_OPTIONS}: the job is
// queue.add(K2R_BULLMQ_NAME, RECORD, {...JOB_OPTIONS, jobId: JOB_ID}). Environment: K2R_REDIS_HOST,
// K2R_REDIS_PORT, K2R_REDIS_DB (127.0.0.1, 6379, 0), K2R_BULLMQ_PREFIX (bull), K2R_BULLMQ_QUEUE (required),
// K2R_BULLMQ_NAME (record). Prints each id the client returned, one a line.
import { createInterface } from 'node:readline';
import { Queue } from 'bullmq';

const env = process.env;
if (!env.K2R_BULLMQ_QUEUE) {
  console.error('client_add.mjs: K2R_BULLMQ_QUEUE is required');
  process.exit(2);
}
const queue = new Queue(env.K2R_BULLMQ_QUEUE, {
  connection: {
    host: env.K2R_REDIS_HOST || '127.0.0.1',
    port: Number(env.K2R_REDIS_PORT || 6379),
    db: Number(env.K2R_REDIS_DB || 0),
  },
  prefix: env.K2R_BULLMQ_PREFIX || 'bull',
});
const name = env.K2R_BULLMQ_NAME || 'record';
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const { id, record, opts } = JSON.parse(line);
  const job = await queue.add(name, record, { ...opts, jobId: id });
  console.log(job.id);
}
await queue.close();
