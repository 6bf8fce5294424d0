// Type-checked, never run (`tsc -p test/types`): how an app uses the package, with the real
// replicache client, and uses the types get wrong must not compile.
import { Replicache } from 'replicache';
import {
  KEEP_ALIVE_MS,
  SYNC_KEY,
  completeSyncs,
  connect,
  endpoints,
  listenForPokes,
  replicacheOptions,
  syncComplete,
  type Endpoints,
  type Server,
} from 'replicache-dynamodb-client';

const mutators = {
  async increment(tx: import('replicache').WriteTransaction, by: number) {
    await tx.set('count', ((await tx.get<number>('count')) ?? 0) + by);
  },
};

// Locally (the page's own dev server), and against a deployed stack.
const local: Server = { spaceID: 'team-1', auth: 'alice' };
const deployed: Server = {
  spaceID: 'team-1',
  auth: async () => 'a JWT',
  api: 'https://abc123.execute-api.eu-west-1.amazonaws.com',
  ws: 'wss://def456.execute-api.eu-west-1.amazonaws.com/prod',
};

const rep = new Replicache({ name: 'alice', licenseKey: 'l', mutators, ...replicacheOptions(local) });
const stop: () => void = connect(rep, local, { onState: (open: boolean) => console.log(open) });
stop();
connect(rep, deployed)();

const urls: Endpoints = endpoints('team-1', { api: deployed.api, ws: deployed.ws });
const stopPokes = listenForPokes(
  { spaceID: 'team-1', ticketURL: urls.ticketURL, pokeURL: urls.pokeURL, auth: () => rep.auth },
  { onPoke: () => void rep.pull(), onReconnect: () => void rep.push({ now: true }) },
);
stopPokes();

const stopSyncs = completeSyncs(rep);
const done: Promise<void> = syncComplete(rep);
void done.then(stopSyncs);
const key: 'replicache-dynamodb/sync' = SYNC_KEY;
const ms: number = KEEP_ALIVE_MS;
void key;
void ms;

// Mistakes the types catch.
// @ts-expect-error the space is required
replicacheOptions({ auth: 'alice' });
// @ts-expect-error connect needs a Replicache (pull, push, subscribe, auth), not its options
connect({ pushURL: urls.pushURL }, local);
// @ts-expect-error onPoke is required
listenForPokes({ spaceID: 's', ticketURL: '', pokeURL: '' }, {});
// @ts-expect-error auth is a string or a function returning one
connect(rep, { spaceID: 's', auth: 42 });
