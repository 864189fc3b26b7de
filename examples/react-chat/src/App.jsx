// The whole app: who you are, the provider, one room. The settings come from the query string
// (?user=alice&room=lobby&url=ws://127.0.0.1:3001/local) or the form.
import { useState } from 'react';
import { WebSocketProvider } from '@parley/client/react';
import ChatRoom from './ChatRoom.jsx';
import ConnectionStatus from './ConnectionStatus.jsx';

const params = new URLSearchParams(window.location.search);
const url = params.get('url') ?? import.meta.env.VITE_PARLEY_URL ?? 'ws://127.0.0.1:3001/local';

/** `parley dev` serves dev tokens next to the WebSocket API: ws://host:port/stage -> http://host:port/dev/token. */
function devTokenProvider(user) {
  const tokenUrl = url.replace(/^ws/, 'http').replace(/\/[^/]*$/, '/dev/token');
  return async () => {
    const res = await fetch(`${tokenUrl}?user=${encodeURIComponent(user)}&name=${encodeURIComponent(user)}`);
    if (!res.ok) throw new Error(`/dev/token answered HTTP ${res.status}`);
    return (await res.json()).token;
  };
}

export default function App() {
  const [session, setSession] = useState(() => {
    const user = params.get('user');
    return user ? { user, room: params.get('room') || 'lobby' } : null;
  });
  const [getToken] = useState(() => (session ? devTokenProvider(session.user) : null));

  if (!session) return <SignIn onSignIn={(s) => window.location.assign(`?${new URLSearchParams({ ...s, url })}`)} />;
  return (
    <WebSocketProvider url={url} tokenProvider={getToken} options={{ backoff: { initialMs: 500, maxMs: 5000 } }}>
      <header>
        <h1>Parley chat</h1>
        <span className="me" data-user={session.user}>{session.user}</span>
        <ConnectionStatus />
      </header>
      <ChatRoom roomId={session.room} me={session.user} />
    </WebSocketProvider>
  );
}

function SignIn({ onSignIn }) {
  const [user, setUser] = useState('');
  const [room, setRoom] = useState('lobby');
  return (
    <form className="sign-in" onSubmit={(e) => (e.preventDefault(), user && onSignIn({ user, room }))}>
      <label>
        Name <input id="user" value={user} onChange={(e) => setUser(e.target.value)} autoFocus />
      </label>
      <label>
        Room <input id="room" value={room} onChange={(e) => setRoom(e.target.value)} />
      </label>
      <button type="submit">Join</button>
    </form>
  );
}
