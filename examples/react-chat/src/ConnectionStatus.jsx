// What the client says about the connection, as it says it (never a remembered state).
import { useWebSocket } from '@parley/client/react';

export default function ConnectionStatus() {
  const { state, reconnectAttempts, error } = useWebSocket();
  let text;
  if (state === 'open') text = 'Connected';
  else if (state === 'reconnecting') text = `Reconnecting… (attempt ${reconnectAttempts})`;
  else if (state === 'closed') text = error ? `Disconnected: ${error.message}` : 'Disconnected';
  else text = 'Connecting…';
  return (
    <span id="status" data-state={state}>
      {text}
    </span>
  );
}
