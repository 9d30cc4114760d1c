/** The XML helpers of the SOAP transport: escaping on the way out, entity decoding and faults on the way in. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeXmlText, el, escapeXml, parseXml, sessionCookie, xml, XmlFragment } from '../../../src/transports/soap';

describe('xml builder', () => {
  test('interpolations are escaped; fragments are spliced as built', () => {
    const hostile = `a&b<c>"d'</name><password>x</password>`;
    const f = xml`<spec>${el('name', hostile)}${el('numPorts', 8)}${el('autoExpand', true)}</spec>`;
    assert.equal(
      f.text,
      '<spec><name>a&amp;b&lt;c&gt;&quot;d&apos;&lt;/name&gt;&lt;password&gt;x&lt;/password&gt;</name><numPorts>8</numPorts><autoExpand>true</autoExpand></spec>',
    );
    assert.equal(xml`<a x="${'"q"'}">${'<b>'}</a>`.text, '<a x="&quot;q&quot;">&lt;b&gt;</a>');
  });

  test('el: optional fields stay absent; arrays of fragments are concatenated; attributes escaped', () => {
    assert.equal(el('configVersion', undefined).text, '');
    assert.equal(xml`<x>${[el('a', 1), el('b', 2)]}</x>`.text, '<x><a>1</a><b>2</b></x>');
    assert.equal(el('obj', 'host-1', { type: 'Host"System' }).text, '<obj type="Host&quot;System">host-1</obj>');
  });

  test('refuses element names that are not XML names, characters XML cannot carry, and NaN', () => {
    assert.throws(() => el('a b', 'x'), TypeError);
    assert.throws(() => el('x', 'v', { 'on"x': 'y' }), TypeError);
    assert.throws(() => escapeXml('a\u0000b'), TypeError);
    assert.throws(() => el('n', Number.NaN), TypeError);
    assert.equal(escapeXml('tab\tand\nnewline'), 'tab\tand\nnewline');
    assert.ok(xml`` instanceof XmlFragment);
  });
});

describe('xml parser', () => {
  test('decodes the five entities and numeric references once (no double decoding)', () => {
    assert.equal(decodeXmlText('a &#34;b&#34; &amp;lt; &#x9;&#39;&lt;&gt;&quot;&apos;'), 'a "b" &lt; \t\'<>"\'');
  });

  test('namespace prefixes dropped from tags; xsi:type (any prefix) kept apart from a reference’s type', () => {
    const doc = parseXml(
      '<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="s" xmlns:XMLSchema-instance="i"><soapenv:Body><R xmlns="urn:vim25"><returnval type="HostSystem" XMLSchema-instance:type="ManagedObjectReference">host-1</returnval><n>a &amp;#34; &#34;</n></R></soapenv:Body></soapenv:Envelope>',
    );
    const r = ((doc.Envelope as Record<string, unknown>).Body as Record<string, unknown>).R as Record<string, unknown>;
    assert.deepEqual(r.returnval, { '#text': 'host-1', '@_type': 'HostSystem', '@_xsiType': 'ManagedObjectReference' });
    assert.equal(r.n, 'a &#34; "');
  });

  test('a DOCTYPE entity is not expanded', () => {
    const doc = parseXml('<!DOCTYPE x [<!ENTITY e "EXPANDED">]><x>&e;</x>');
    assert.equal(doc.x, '&e;');
  });

  test('session cookie: quoted or bare; nothing that could split a header', () => {
    assert.equal(sessionCookie(['vmware_soap_session="52a1-b2"; Path=/; HttpOnly; Secure']), '"52a1-b2"');
    assert.equal(sessionCookie(['other=1', 'vmware_soap_session=8bf1-9c; HttpOnly']), '8bf1-9c');
    assert.equal(sessionCookie(['vmware_soap_session=a b; HttpOnly']), undefined);
    assert.equal(sessionCookie(undefined), undefined);
  });
});
