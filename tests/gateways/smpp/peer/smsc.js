// An independent SMSC for the gateway's interoperability test: the npm `smpp` package in server
// mode. Listens on 127.0.0.1 (free port), accepts one account, answers submit_sm with a message id,
// sends a delivery receipt for each registered submit, and prints one JSON line per event.
'use strict';
const smpp = require('smpp');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf('--' + name);
  return i >= 0 ? args[i + 1] : dflt;
};
const systemId = opt('system-id', 'tocsin');
const password = opt('password', 'secret');
const print = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const pad = (n) => String(n).padStart(2, '0');
const stamp = (d) =>
  pad(d.getFullYear() % 100) + pad(d.getMonth() + 1) + pad(d.getDate()) + pad(d.getHours()) + pad(d.getMinutes());

let nextId = 0x1000;

const server = smpp.createServer({ debug: false }, (session) => {
  session.on('bind_transceiver', (pdu) => {
    session.pause();
    const ok = pdu.system_id === systemId && pdu.password === password;
    print({ event: 'bind', system_id: pdu.system_id, ok });
    session.send(pdu.response({ command_status: ok ? smpp.ESME_ROK : smpp.ESME_RINVPASWD }));
    if (ok) session.resume();
    else session.close();
  });
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    print({ event: 'unbind' });
    session.send(pdu.response());
    session.close();
  });
  session.on('submit_sm', (pdu) => {
    const id = (nextId++).toString(16);
    const sm = pdu.short_message || {};
    const concat = (sm.udh || []).find((ie) => ie[0] === 0x00);
    print({
      event: 'submit_sm',
      id,
      source_addr: pdu.source_addr,
      source_addr_ton: pdu.source_addr_ton,
      destination_addr: pdu.destination_addr,
      dest_addr_ton: pdu.dest_addr_ton,
      data_coding: pdu.data_coding,
      esm_class: pdu.esm_class,
      registered_delivery: pdu.registered_delivery,
      text: typeof sm.message === 'string' ? sm.message : null,
      concat: concat ? { ref: concat[2], total: concat[3], number: concat[4] } : null,
    });
    session.send(pdu.response({ message_id: id }));
    if (!pdu.registered_delivery) return;
    const now = new Date();
    session.deliver_sm(
      {
        source_addr: pdu.destination_addr,
        destination_addr: pdu.source_addr,
        esm_class: smpp.ESM_CLASS.MC_DELIVERY_RECEIPT,
        short_message: `id:${id} sub:001 dlvrd:001 submit date:${stamp(now)} done date:${stamp(now)} stat:DELIVRD err:000 text:`,
        receipted_message_id: id,
        message_state: smpp.MESSAGE_STATE.DELIVERED,
      },
      (resp) => print({ event: 'receipt_acked', id, command_status: resp.command_status })
    );
  });
  session.on('error', (err) => print({ event: 'error', message: String(err) }));
});

server.listen(0, '127.0.0.1', () => print({ event: 'listening', port: server.address().port }));
const stop = () => {
  server.close();
  setTimeout(() => process.exit(0), 100);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
