// Multi-document transactions with the official Node.js driver against a
// running cmkdb replica set: `node txn.js <connection string> <database>`.
// A withTransaction commit, an abort, and a write conflict that aborts the
// losing transaction leaving nothing behind. Prints {"ok":true,...} when
// every step passed; exits non-zero on the first failure.
'use strict';

const assert = require('node:assert/strict');
const { MongoClient, MongoServerError } = require('mongodb');

const [uri, dbName = 'node_txn'] = process.argv.slice(2);
if (!uri) {
  console.error('usage: node txn.js <uri> [database]');
  process.exit(2);
}

const steps = [];
async function step(name, fn) {
  try {
    await fn();
    steps.push(name);
  } catch (err) {
    err.message = `step ${name}: ${err.message}`;
    throw err;
  }
}

async function main() {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 30000 });
  await client.connect();
  try {
    const db = client.db(dbName);
    const accounts = db.collection('accounts');
    await step('setup', async () => {
      await db.createCollection('accounts');
      await accounts.insertMany([{ _id: 'a', bal: 100 }, { _id: 'b', bal: 0 }, { _id: 'k', bal: 0 }]);
    });

    await step('withTransaction commits', async () => {
      const session = client.startSession();
      try {
        await session.withTransaction(async () => {
          await accounts.updateOne({ _id: 'a' }, { $inc: { bal: -40 } }, { session });
          await accounts.updateOne({ _id: 'b' }, { $inc: { bal: 40 } }, { session });
          const inside = await accounts.findOne({ _id: 'b' }, { session });
          assert.equal(inside.bal, 40, 'own write visible inside');
          const outside = await accounts.findOne({ _id: 'b' });
          assert.equal(outside.bal, 0, 'uncommitted write invisible outside');
        });
      } finally {
        await session.endSession();
      }
      const docs = await accounts.find({ _id: { $in: ['a', 'b'] } }).sort({ _id: 1 }).toArray();
      assert.deepEqual(docs.map((d) => d.bal), [60, 40]);
    });

    await step('abort leaves nothing', async () => {
      const session = client.startSession();
      try {
        session.startTransaction();
        await accounts.insertOne({ _id: 'aborted' }, { session });
        await session.abortTransaction();
      } finally {
        await session.endSession();
      }
      assert.equal(await accounts.countDocuments({ _id: 'aborted' }), 0);
    });

    await step('write conflict', async () => {
      const s1 = client.startSession();
      const s2 = client.startSession();
      try {
        s1.startTransaction();
        s2.startTransaction();
        await accounts.updateOne({ _id: 'k' }, { $set: { bal: 1 } }, { session: s1 });
        await accounts.insertOne({ _id: 'loser' }, { session: s2 });
        let err;
        try {
          await accounts.updateOne({ _id: 'k' }, { $set: { bal: 2 } }, { session: s2 });
        } catch (e) {
          err = e;
        }
        assert.ok(err instanceof MongoServerError, `expected a server error, got ${err}`);
        assert.equal(err.code, 112);
        assert.ok(err.hasErrorLabel('TransientTransactionError'), 'TransientTransactionError label');
        await s2.abortTransaction().catch(() => {});
        await s1.commitTransaction();
      } finally {
        await s1.endSession();
        await s2.endSession();
      }
      assert.equal((await accounts.findOne({ _id: 'k' })).bal, 1);
      assert.equal(await accounts.countDocuments({ _id: 'loser' }), 0, 'the losing transaction left nothing');
    });

    await step('withTransaction retries a conflict', async () => {
      const holder = client.startSession();
      const session = client.startSession();
      let attempts = 0;
      try {
        holder.startTransaction();
        await accounts.updateOne({ _id: 'k' }, { $inc: { bal: 10 } }, { session: holder });
        await session.withTransaction(async () => {
          attempts++;
          try {
            await accounts.updateOne({ _id: 'k' }, { $inc: { bal: 1 } }, { session });
          } finally {
            if (attempts === 1) await holder.commitTransaction();
          }
        });
      } finally {
        await holder.endSession();
        await session.endSession();
      }
      assert.equal(attempts, 2);
      assert.equal((await accounts.findOne({ _id: 'k' })).bal, 12);
    });
  } finally {
    await client.close();
  }
  console.log(JSON.stringify({ ok: true, steps }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
