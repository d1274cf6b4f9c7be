// Package wire speaks the MongoDB wire protocol: it frames, validates and
// answers messages on client connections and hands each well-formed command
// to a Handler. It knows nothing about databases, storage or users; the
// layers above implement Handler (usually through a Registry).
//
// Supported opcodes: OP_MSG for everything, OP_QUERY only for the legacy
// isMaster/hello handshake (answered with OP_REPLY). OP_COMPRESSED is
// refused because no compressor is ever advertised. Any other opcode closes
// the connection.
//
// A malformed message whose framing is intact gets an error reply and the
// connection keeps serving; a message whose length cannot be trusted, or a
// bad message the client does not expect an answer to (moreToCome), closes
// the connection. Nothing a client sends can panic the process or disturb
// other connections.
package wire
