// One room through useRoom: messages, who is typing and a composer; the member list and
// "N online" through useParticipants, right in a room of 10 and of 10,000.
import { useState } from 'react';
import { useParticipants, useRoom } from '@parley/client/react';

export default function ChatRoom({ roomId, me }) {
  const { messages, typingUsers, joined, send, setTyping } = useRoom(roomId);
  const { participants, count, hasMore, loading, loadMore } = useParticipants(roomId);
  const [text, setText] = useState('');
  const [problem, setProblem] = useState('');
  const othersTyping = typingUsers.filter((u) => u !== me);

  const submit = (e) => {
    e.preventDefault();
    if (!text.trim()) return;
    try {
      send(text);
      setText('');
      setProblem('');
      setTyping(false);
    } catch (err) {
      setProblem(err.message); // queue_full, frame_too_large: the message stays in the box
    }
  };

  return (
    <main>
      <section className="room">
        <h2 id="room" data-joined={joined}>
          #{roomId}
        </h2>
        <ul id="messages">
          {messages.map((m) => (
            <li key={m.messageId} data-message-id={m.messageId} className={m.userId === me ? 'mine' : ''}>
              <b className="name">{m.name}</b> <span className="text">{m.message}</span>
            </li>
          ))}
        </ul>
        <p id="typing">{othersTyping.length > 0 && `${othersTyping.join(', ')} ${othersTyping.length > 1 ? 'are' : 'is'} typing…`}</p>
        <form onSubmit={submit}>
          <input
            id="chat-input"
            value={text}
            placeholder="Message"
            autoComplete="off"
            onChange={(e) => {
              setText(e.target.value);
              setTyping(e.target.value !== '');
            }}
            onBlur={() => setTyping(false)}
          />
          <button id="send" type="submit">
            Send
          </button>
        </form>
        {problem && <p id="problem">{problem}</p>}
      </section>
      <aside>
        <h3>
          In the room: <span id="participant-count">{count}</span> online
        </h3>
        <ul id="participants">
          {participants.map((p) => (
            <li key={p.userId} data-user-id={p.userId}>
              {p.name}
            </li>
          ))}
        </ul>
        {hasMore && (
          <button id="participants-more" type="button" disabled={loading} onClick={() => loadMore()}>
            Show more
          </button>
        )}
      </aside>
    </main>
  );
}
