// An h2c origin for h2-origin.sh: answers every stream with a 200 and a
// body of BODY bytes (default 1 KiB), cacheable for an hour.
//   node h2-origin.mjs PORT
import http2 from 'node:http2';

const body = Buffer.alloc(Number(process.env.BODY || 1024), 'a');
const server = http2.createServer({ settings: { maxConcurrentStreams: 256 } });
server.on('stream', (stream) => {
  stream.respond({
    ':status': 200,
    'content-length': body.length,
    'cache-control': 'max-age=3600',
  });
  stream.end(body);
});
server.listen(Number(process.argv[2]), '127.0.0.1');
