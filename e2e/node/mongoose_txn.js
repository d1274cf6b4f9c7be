// A mongoose transaction against a running cmkdb replica set:
// `node mongoose_txn.js <connection string> <database>`. Commits through
// connection.transaction(), checks an abort leaves nothing, and that a
// write conflict surfaces as WriteConflict (112) with the
// TransientTransactionError label. Prints {"ok":true,...} when all pass.
'use strict';

const assert = require('node:assert/strict');
const mongoose = require('mongoose');

const [uri, dbName = 'mongoose_txn'] = process.argv.slice(2);
if (!uri) {
  console.error('usage: node mongoose_txn.js <uri> [database]');
  process.exit(2);
}

async function main() {
  const conn = await mongoose.createConnection(uri, { dbName, serverSelectionTimeoutMS: 30000 }).asPromise();
  const steps = [];
  try {
    const Account = conn.model('Account', new mongoose.Schema({ _id: String, bal: Number }));
    await Account.createCollection();
    await Account.create([{ _id: 'a', bal: 100 }, { _id: 'b', bal: 0 }]);

    await conn.transaction(async (session) => {
      await Account.updateOne({ _id: 'a' }, { $inc: { bal: -25 } }, { session });
      await Account.updateOne({ _id: 'b' }, { $inc: { bal: 25 } }, { session });
      assert.equal((await Account.findById('b').session(session)).bal, 25);
      assert.equal((await Account.findById('b')).bal, 0);
    });
    assert.deepEqual((await Account.find().sort({ _id: 1 })).map((d) => d.bal), [75, 25]);
    steps.push('commit');

    const s = await conn.startSession();
    s.startTransaction();
    await Account.create([{ _id: 'gone', bal: 1 }], { session: s });
    await s.abortTransaction();
    await s.endSession();
    assert.equal(await Account.countDocuments({ _id: 'gone' }), 0);
    steps.push('abort');

    const s1 = await conn.startSession();
    const s2 = await conn.startSession();
    s1.startTransaction();
    s2.startTransaction();
    await Account.updateOne({ _id: 'a' }, { $set: { bal: 1 } }, { session: s1 });
    await Account.create([{ _id: 'loser', bal: 0 }], { session: s2 });
    let err;
    try {
      await Account.updateOne({ _id: 'a' }, { $set: { bal: 2 } }, { session: s2 });
    } catch (e) {
      err = e;
    }
    assert.ok(err, 'the second writer must fail');
    assert.equal(err.code, 112);
    assert.ok(err.hasErrorLabel && err.hasErrorLabel('TransientTransactionError'));
    await s2.abortTransaction().catch(() => {});
    await s1.commitTransaction();
    await s1.endSession();
    await s2.endSession();
    assert.equal((await Account.findById('a')).bal, 1);
    assert.equal(await Account.countDocuments({ _id: 'loser' }), 0);
    steps.push('conflict');
  } finally {
    await conn.close();
  }
  console.log(JSON.stringify({ ok: true, steps }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
